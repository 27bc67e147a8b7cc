"""The arrow-pointing learnability check runs, learns a fixed batch, and rejects bad sizes."""

import json
import sys

import pytest
from flax import nnx

from experiments.arrow_pointing import learnability


def test_learnability_prints_json_per_eval(capsys, monkeypatch):
    argv = ["learnability", "--resolution", "32", "--steps", "3", "--batch", "8",
            "--eval-every", "2", "--num-eval", "16"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    learnability.main()
    records = [json.loads(ln) for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert [r["step"] for r in records] == [2, 3]
    assert all(0.0 <= r["val_accuracy"] <= 1.0 and r["train_loss"] > 0 for r in records)


def test_flatten_cnn_rejects_a_resolution_not_divisible_by_8():
    with pytest.raises(ValueError, match="multiple of 8"):
        learnability.FlattenCNN(60, rngs=nnx.Rngs(0))
