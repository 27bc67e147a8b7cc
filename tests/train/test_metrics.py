"""augpar.train.metrics: metrics.jsonl round trip and the per-run curve plot used by the
experiments' summary figures."""

import os

from matplotlib.figure import Figure

from augpar.train import MetricsWriter, plot_runs, read_metrics, save_figure


def test_plot_runs_draws_one_line_per_run_from_the_logged_steps(tmp_path):
    for run, losses in (("a", [1.0, 0.5, 0.25]), ("b", [2.0, 1.0])):
        writer = MetricsWriter(str(tmp_path / run), tensorboard=False)
        for step, loss in enumerate(losses):
            writer.write(10 * step, {"train/loss": loss})
            writer.write(10 * step + 5, {"eval/val/accuracy": 0.5})  # other key: skipped
        writer.close()
    assert [r["train/loss"] for r in read_metrics(str(tmp_path / "a")) if "train/loss" in r] == [
        1.0, 0.5, 0.25]  # fmt: skip

    fig = Figure()
    ax = fig.subplots()
    plot_runs(ax, str(tmp_path), ["a", "b"], "train/loss", scale=100.0, ylabel="loss (%)")
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"a", "b"}
    assert list(lines["a"].get_xdata()) == [0, 10, 20]
    assert list(lines["a"].get_ydata()) == [100.0, 50.0, 25.0]
    assert list(lines["b"].get_ydata()) == [200.0, 100.0]
    assert ax.get_ylabel() == "loss (%)" and ax.get_xlabel() == "step"

    path = save_figure(fig, str(tmp_path), "runs.png")
    assert path == os.path.join(str(tmp_path), "runs.png") and os.path.getsize(path) > 0
