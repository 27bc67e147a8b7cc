"""The pLSTM layer benchmark runs and prints well-formed JSON (tiny sizes)."""

import json
import sys

from experiments.benchmarks import plstm_layer


def test_plstm_layer_benchmark_prints_json(capsys, monkeypatch):
    argv = ["plstm_layer", "--grids", "4", "--batch", "2", "--dim", "8", "--repeats", "1",
            "--baselines", "dense"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    plstm_layer.main()
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["ours"] == "masked" and record["baseline"] == "dense"
    assert record["ours_s"] > 0 and record["baseline_s"] > 0
    # ours_s / baseline_s are rounded to 10 us in the record; the ratio is from the raw times.
    assert abs(record["ratio"] - record["baseline_s"] / record["ours_s"]) < 0.05 * record["ratio"]
    assert record["peak_bytes"] is None or record["peak_bytes"] >= 0
