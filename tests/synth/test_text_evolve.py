"""Private Evolution for text corpora (evolve.road in a [text] run): the public or DP-fine-tuned model
writes and varies documents, each label keeps its share of the population, every histogram is paid
for in the run's one ledger, and `dpsynth generate` re-exports the population without a new release."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from synth.lm import ModelChoice
from synth.text import TextGenerator, TextSpec

from .specs import SHARED

DRUGS = SHARED / "drugs_train.csv"


def _config(tmp_path, road: str, n: int = 12) -> str:
    return f"""
[data]
path = "reviews.csv"
[text]
text = "review"
labels = [{{ name = "rating", type = "categorical", categories = ["negative", "neutral", "positive"] }}]
label_weights = {{ negative = 0.25, neutral = 0.25, positive = 0.5 }}
chunk_tokens = 96
max_chunks_per_unit = 2
[model]
model = "scratch"
[train]
target_epsilon = 6.0
steps = 2
expected_batch_size = 8
physical_batch_size = 4
progress = false
seed = 0
insecure_seed = true
[evolve]
road = "{road}"
iterations = 2
threshold_sigmas = 0.0
[generate]
n = {n}
max_new_tokens = 16
seed = 1
[output]
dir = "run"
format = "jsonl"
"""


@pytest.mark.skipif(not DRUGS.exists(), reason="shared data not present")
@pytest.mark.parametrize("road", ["evolve", "fine-tune+evolve"])
def test_a_text_run_evolves_documents_label_by_label_and_pays_each_histogram(tmp_path, road):
    from synth.cli.main import main

    pd.read_csv(DRUGS).head(40).to_csv(tmp_path / "reviews.csv", index=False)
    (tmp_path / "run.toml").write_text(_config(tmp_path, road))
    assert main(["run", str(tmp_path / "run.toml")]) == 0
    export = tmp_path / "run" / "export"
    card = json.loads((export / "dpsynth.json").read_text())
    docs = pd.read_json(export / "synthetic.jsonl", lines=True)
    stages = [s["stage"] for s in card["privacy"]["stages"]]
    assert stages == (["evolve:histogram"] if road == "evolve" else ["train", "evolve:histogram"])
    histogram = card["privacy"]["stages"][-1]
    assert histogram["steps"] == 2 and histogram["sample_rate"] == 1.0
    assert card["privacy"]["epsilon"] == pytest.approx(6.0, rel=0.02)  # σ calibrated to what was left
    assert len(docs) == 12 and card["evolve"]["road"] == road
    assert "a document votes among candidates with its own labels" in card["generation"]["summary"]
    readme = (export / "README.md").read_text()
    assert ("chunks per step" in readme) == (road == "fine-tune+evolve")  # DP-SGD's bound, only where it trained
    # the population's labels were drawn once (declared weights) and every resampling kept them
    state = json.loads((tmp_path / "run" / "evolution" / "evolution_state.json").read_text())["state"]
    assert state["iteration"] == 2 and sorted(docs["rating"]) == sorted(d["rating"] for d in state["population"])
    # `dpsynth generate` re-exports the same population: no histogram released twice
    (export / "synthetic.jsonl").unlink()
    assert main(["generate", str(tmp_path / "run.toml"), "--overwrite"]) == 0
    again = json.loads((export / "dpsynth.json").read_text())
    assert again["privacy"] == card["privacy"]
    pd.testing.assert_frame_equal(pd.read_json(export / "synthetic.jsonl", lines=True), docs)


def test_a_variation_keeps_its_parents_labels_and_opening_words():
    import torch

    torch.manual_seed(0)
    spec = TextSpec(text="review", labels=[{"name": "rating", "type": "categorical",
                                             "categories": ["negative", "positive"]}])
    gen = TextGenerator(spec, ModelChoice(model="scratch"))
    parents = [{"rating": "negative", "review": "one two three four five six seven eight"},
               {"rating": "positive", "review": "alpha beta gamma delta"}] * 10
    children = gen.vary(parents, np.random.default_rng(0), keep=0.5, max_new_tokens=8, progress=False)
    assert [c["rating"] for c in children] == [p["rating"] for p in parents]
    heads = []
    for parent, child in zip(parents, children, strict=True):
        words = parent["review"].split(" ")
        kept = next(m for m in range(len(words) // 2, -1, -1) if child["review"].startswith(" ".join(words[:m])))
        heads.append(kept)
    assert max(heads) > 0 and min(heads) == 0  # some keep an opening (at most half), some start afresh
    # the kept opening counts against the budget: opening + what the model may write = max_new_tokens
    calls, complete = [], gen._complete
    gen._complete = lambda prompts, **kw: calls.append((prompts, kw["new_token_budgets"])) or complete(prompts, **kw)
    gen.vary(parents, np.random.default_rng(1), keep=0.5, max_new_tokens=24, progress=False)
    (prompts, budgets), = calls
    opening = [len(p) - len(gen.prompt_ids((parent["rating"],))) for p, parent in zip(prompts, parents, strict=True)]
    assert [o + b for o, b in zip(opening, budgets, strict=True)] == [24] * len(parents) and max(opening) > 0


def test_evolve_refuses_a_context_column_and_images(tmp_path):
    from synth.run_config import build_config
    from trainer.errors import ConfigError

    raw = {"data": {"path": "x.csv"}, "text": {"text": "review", "context": "drug"},
           "evolve": {"road": "evolve"}, "train": {"target_epsilon": 4.0}}
    with pytest.raises(ConfigError, match="context column"):
        build_config(raw)
