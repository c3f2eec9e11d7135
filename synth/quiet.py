"""Quiet by default: third-party notices that say nothing to a dpsynth user are switched off.

Hidden unless ``dpsynth --verbose``: transformers' and datasets' progress bars (loading and
de-quantizing the offline GGUF model, writing shards) and info logs, deprecation / future warnings
raised inside transformers, diffusers, peft, torch, sdmetrics and datasets (they are for the
authors of the code that calls them: us), jax's and mbi's notices.  dpsynth's own messages, its
progress bars (training, AIM, generation) and every error stay.  Opacus' accountant warnings are
filtered where ε is computed (trainer/accounting/accountants.py).
"""

from __future__ import annotations

import logging
import os
import warnings

QUIET_MODULES = r"(transformers|diffusers|peft|torch|sdmetrics|datasets|huggingface_hub|jax|mbi|copulas|sklearn)(\.|$)"


def quiet_third_party(verbose: bool = False) -> None:
    if verbose:
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DATASETS_VERBOSITY", "error")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category, module=QUIET_MODULES)
    for name in ("transformers", "diffusers", "peft", "datasets", "huggingface_hub", "jax", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
    _disable_library_bars()


def _disable_library_bars() -> None:
    """Progress bars of libraries that are already imported (a later import reads the env vars)."""
    import sys

    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()
