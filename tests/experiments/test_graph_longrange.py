"""Long-range graph experiment: data/graph construction and a smoke run with restore/continue."""

import json
import os

import numpy as np
import pytest

from augpar.train import read_metrics
from experiments.graph_longrange import train as glr
from experiments.graph_longrange.configs import default


def _distances_from(dag, start):
    dist = {start: 0}
    frontier = [start]
    while frontier:
        nxt = []
        for n in frontier:
            for s, d in zip(dag.edge_src, dag.edge_dst, strict=True):
                if s == n and d not in dist:
                    dist[int(d)] = dist[n] + 1
                    nxt.append(int(d))
        frontier = nxt
    return dist


def test_layered_dag_every_source_reaches_the_sink_at_full_distance():
    dag, sources, readout = glr.layered_dag(5, 3, seed=0)
    sink = dag.num_nodes - 1
    assert readout.sum() == 1.0 and readout[sink] == 1.0
    for s in sources:
        assert _distances_from(dag, int(s))[sink] == 6  # num_layers + 1 hops, no shortcut
    with pytest.raises(ValueError, match="num_layers=0"):
        glr.layered_dag(0, 3, seed=0)


def test_generated_label_is_the_flagged_sources_bit():
    dag, sources, _ = glr.layered_dag(3, 4, seed=0)
    data = glr.generate(200, dag.num_nodes, sources, num_features=4, noise=1.0, seed=3)
    x, y = data["x"], data["label"]
    assert x.shape == (200, dag.num_nodes, 4) and y.shape == (200,)
    assert np.all(x[:, :, 0].sum(1) == 1.0) and np.all(x[:, sources, 0].sum(1) == 1.0)
    flagged = np.argmax(x[:, sources, 0], axis=1)
    np.testing.assert_array_equal(y, (x[np.arange(200), sources[flagged], 1] > 0).astype(int))
    assert 0.3 < y.mean() < 0.7


def test_smoke_two_steps_checkpoint_restore_continue(tmp_path, capsys):
    config = default.get_config("smoke")
    results = glr.train_and_evaluate(config, str(tmp_path))
    assert set(results) == {"plstm", "gnn"} and all(0.0 <= a <= 1.0 for a in results.values())
    for name in results:
        assert sorted(os.listdir(tmp_path / name / "checkpoints")) == ["2"]
    out = capsys.readouterr().out
    assert "accuracy (5 hops, %)" in out and "summary.png" in out
    summary = json.load(open(tmp_path / "results.json"))
    assert summary["hops"] == 5 and summary["num_steps"] == 2

    config.num_steps = 4  # continue from the step-2 checkpoint
    glr.train_and_evaluate(config, str(tmp_path))
    for name in results:
        assert sorted(os.listdir(tmp_path / name / "checkpoints"), key=int) == ["2", "4"]
        steps = [r["step"] for r in read_metrics(str(tmp_path / name)) if "train/loss" in r]
        assert steps == [1, 2, 3, 4]
