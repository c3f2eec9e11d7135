"""Each registered layer rule against the fp64 per-sample oracle."""

from __future__ import annotations

import zlib

import pytest
import torch
from torch import nn

from trainer.clipping import registered

from ..helpers import check_against_oracle
from ..models import Wrap, row_loss

B, T = 6, 5


def _conv1d():
    from transformers.pytorch_utils import Conv1D

    return Conv1D(7, 6)


def _llama_rms():
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    m = LlamaRMSNorm(6)
    nn.init.normal_(m.weight)
    return m


def _ln():
    m = nn.LayerNorm(6)
    nn.init.normal_(m.weight)
    nn.init.normal_(m.bias)
    return m


def _rms():
    m = nn.RMSNorm(6)
    nn.init.normal_(m.weight)
    return m


def _gn():
    m = nn.GroupNorm(3, 6)
    nn.init.normal_(m.weight)
    nn.init.normal_(m.bias)
    return m


def _images(h, w, channels_last=False):
    """(B, 6, h, w) images whatever (B, T, d) asks: 6 channels = B, so dimension 1 equals the rows."""
    def make(b, t, d):
        x = torch.randn(b, 6, h, w, dtype=torch.float64)
        return x.to(memory_format=torch.channels_last) if channels_last else x
    return make


def _floats(*shape):
    return torch.randn(*shape, dtype=torch.float64)


def _ids(vocab=11):
    return lambda *shape: torch.randint(0, vocab, shape[:2])


# name -> (layer factory, input factory given (B, T, d), d_out, registered type name)
CASES = {
    "Linear": (lambda: nn.Linear(6, 7), _floats, 7, "Linear"),
    "Linear-2d-input": (lambda: nn.Linear(6, 7), lambda b, t, d: _floats(b, d), 7, "Linear"),
    "Linear-no-bias": (lambda: nn.Linear(6, 7, bias=False), _floats, 7, "Linear"),
    "Conv1D": (_conv1d, _floats, 7, "Conv1D"),
    "Embedding": (lambda: nn.Embedding(11, 7), _ids(), 7, "Embedding"),
    "Embedding-padding": (lambda: nn.Embedding(11, 7, padding_idx=0), _ids(3), 7, "Embedding"),
    "LayerNorm": (_ln, _floats, 6, "LayerNorm"),
    "RMSNorm": (_rms, _floats, 6, "RMSNorm"),
    "LlamaRMSNorm": (_llama_rms, _floats, 6, None),  # via the *RMSNorm family rule
    # images: the readout contracts the last (width) dimension, 5 everywhere
    "Conv2d": (lambda: nn.Conv2d(6, 4, 3, padding=1), _images(5, 5), 5, "Conv2d"),
    "Conv2d-stride-dilation-no-bias": (lambda: nn.Conv2d(6, 4, 3, stride=2, dilation=2, padding=2, bias=False),
                                       _images(9, 9), 5, "Conv2d"),
    "Conv2d-same-reflect-even-kernel": (lambda: nn.Conv2d(6, 4, (3, 2), padding="same", padding_mode="reflect"),
                                        _images(5, 5), 5, "Conv2d"),
    "Conv2d-channels-last": (lambda: nn.Conv2d(6, 4, 3, padding=1).to(memory_format=torch.channels_last),
                             _images(5, 5, channels_last=True), 5, "Conv2d"),
    "GroupNorm": (_gn, _images(4, 5), 5, "GroupNorm"),
}


def test_every_registered_layer_has_a_case():
    covered = {case[3] for case in CASES.values()}
    missing = {t.__name__ for t in registered()} - covered
    assert not missing, f"registered layer rules without an oracle test: {missing}"


@pytest.mark.parametrize("clipping", ["per_layer", "flat"])
@pytest.mark.parametrize("norm_method", ["ghost", "instantiate", "auto"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_matches_oracle(case, clipping, norm_method):
    torch.manual_seed(zlib.crc32(case.encode()) % 1000)  # hash() of a str changes per process
    make_layer, make_x, d_out, _ = CASES[case]
    model = Wrap(make_layer(), 6, d_out).double()
    x = make_x(B, T, 6)
    micro = [[[0], [1], [2]], [[3], [4], [5]]]  # two micro-batches accumulate
    check_against_oracle(model, row_loss, x, micro, clipping=clipping, norm_method=norm_method)


@pytest.mark.parametrize("case", ["Linear", "Embedding", "LayerNorm", "Conv2d", "GroupNorm"])
def test_user_level_units_match_oracle(case):
    """A unit of several rows is clipped as one: the norm of the sum of its rows' gradients."""
    torch.manual_seed(1)
    make_layer, make_x, d_out, _ = CASES[case]
    model = Wrap(make_layer(), 6, d_out).double()
    x = make_x(7, T, 6)
    micro = [[[0, 3], [1], [2, 4, 5]], [[6]]]
    for clipping in ("per_layer", "flat"):
        check_against_oracle(model, row_loss, x, micro, clipping=clipping)


def test_automatic_clipping_matches_oracle():
    torch.manual_seed(2)
    model = Wrap(nn.Linear(6, 7), 6, 7).double()
    check_against_oracle(model, row_loss, _floats(B, T, 6), [[[i] for i in range(B)]], clipping="flat", automatic=True)


def test_grouped_convolution_is_refused_by_name():
    from trainer import DPEngine, UnsupportedLayerError

    model = Wrap(nn.Conv2d(6, 4, 3, padding=1, groups=2), 6, 5).double()
    eng = DPEngine(model, max_grad_norm=1.0)
    with pytest.raises(UnsupportedLayerError, match="'layer' is a grouped convolution"):
        with eng.micro_batch(2):
            row_loss(model, torch.randn(2, 6, 5, 5, dtype=torch.float64)).sum().backward()
    eng.detach()


@pytest.mark.parametrize("clipping", ["per_layer", "flat"])
@pytest.mark.parametrize("norm_method", ["ghost", "instantiate"])
@pytest.mark.parametrize("case", [c for c in sorted(CASES) if c.startswith("Conv2d")])
def test_conv_factored_path_matches_oracle(case, clipping, norm_method, monkeypatch):
    """Layers too large for one grouped per-row convolution take the unfold (FactoredGrad) path."""
    monkeypatch.setattr("trainer.clipping.conv.DENSE_LIMIT", 0)
    torch.manual_seed(3)
    make_layer, make_x, d_out, _ = CASES[case]
    model = Wrap(make_layer(), 6, d_out).double()
    check_against_oracle(model, row_loss, make_x(B, T, 6), [[[0], [1], [2]], [[3], [4], [5]]],
                         clipping=clipping, norm_method=norm_method)


def test_group_norm_fused_backward_equals_the_explicit_per_row_sums():
    """The fused route (the batch as one row of B x C channels) gives the per-row weight and bias
    gradients and the input gradient of the explicit route (x̂ rebuilt per row), on fp64 inputs with
    a large mean (where a careless ds - mean * db form would cancel); bf16 inputs take the explicit
    route and still sum in fp32."""
    from trainer.clipping.group_norm import _explicit_per_row, _fused_per_row

    torch.manual_seed(4)
    n, c, groups = 5, 6, 3
    x = torch.randn(n, c, 4, 5, dtype=torch.float64) * 3 + 20
    w, b = torch.randn(c, dtype=torch.float64), torch.randn(c, dtype=torch.float64)
    _, mean, rstd = torch.ops.aten.native_group_norm(x, w, b, n, c, 20, groups, 1e-5)
    g = torch.randn_like(x)
    fused = _fused_per_row(g, x, mean, rstd, w, groups, (True, True, True))
    explicit = _explicit_per_row(g, x, mean, rstd, w, groups, torch.float64, True, (True, True))
    for a, e in zip(fused, explicit, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)
    # each row's weight gradient is the gradient of that row alone
    for row in range(n):
        xr = x[row : row + 1].clone()
        wr = w.clone().requires_grad_(True)
        torch.nn.functional.group_norm(xr, groups, wr, b).mul(g[row : row + 1]).sum().backward()
        torch.testing.assert_close(fused[1][row], wr.grad, rtol=1e-10, atol=1e-10)
    xb, gb = x.float().bfloat16(), g.float().bfloat16()
    _, mb, rb = torch.ops.aten.native_group_norm(xb, w.float(), b.float(), n, c, 20, groups, 1e-5)
    low = _explicit_per_row(gb, xb, mb, rb, w.float(), groups, torch.float32, False, (True, True))
    assert low[1].dtype == low[2].dtype == torch.float32
    torch.testing.assert_close(low[1].double(), fused[1], rtol=0.05, atol=0.3)
