"""Run outputs: ``config.json``, ``metrics.jsonl``, TensorBoard events and a PNG of the curves."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic | np.ndarray) or hasattr(x, "__array__"):
        arr = np.asarray(x)
        return arr.item() if arr.ndim == 0 else arr.tolist()
    if isinstance(x, int | float | str | bool) or x is None:
        return x
    return repr(x)


def write_config(workdir: str, config: Any) -> None:
    """Writes ``config`` (a ConfigDict, dict or dataclass) to ``<workdir>/config.json``."""
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(_jsonable(config), f, indent=2, sort_keys=True)


def read_metrics(workdir: str) -> list[dict[str, Any]]:
    """Reads ``<workdir>/metrics.jsonl`` into a list of dicts (one per logged step)."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class MetricsWriter:
    """Appends scalars to ``metrics.jsonl`` and TensorBoard events (process 0 only writes)."""

    def __init__(self, workdir: str, *, enabled: bool = True, tensorboard: bool = True):
        self.workdir = workdir
        self.enabled = enabled
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if enabled:
            os.makedirs(workdir, exist_ok=True)
            if tensorboard:
                from tensorboardX import SummaryWriter

                self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Drops records logged after ``step`` (a resumed run logs those steps again)."""
        if not self.enabled or not os.path.exists(self.path):
            return
        kept = [r for r in read_metrics(self.workdir) if r.get("step", 0) <= step]
        with open(self.path, "w") as f:
            for r in kept:
                f.write(json.dumps(r) + "\n")

    def write(self, step: int, scalars: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **{k: float(np.asarray(v)) for k, v in scalars.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in record.items():
                if k != "step" and math.isfinite(v):
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def plot_curves(workdir: str, *, filename: str = "curves.png", title: str | None = None) -> str:
    """Plots every logged scalar against step, one panel per group, into ``<workdir>/<filename>``.

    Train metrics (``train/...``) and eval metrics (``eval/<split>/...``) sharing a final name
    share a panel, so e.g. train and eval accuracies are compared directly.

    Returns:
      The path of the PNG.
    """
    # A bare Figure: no pyplot state, no global backend switch (notebooks keep theirs).
    from matplotlib.figure import Figure

    records = read_metrics(workdir)
    series: dict[str, dict[str, tuple[list, list]]] = {}
    for r in records:
        for k, v in r.items():
            if k == "step" or not isinstance(v, int | float) or not math.isfinite(v):
                continue
            panel = k.rsplit("/", 1)[-1]
            xs, ys = series.setdefault(panel, {}).setdefault(k, ([], []))
            xs.append(r["step"])
            ys.append(v)
    panels = [p for p in ("loss", "accuracy") if p in series] + sorted(
        p for p in series if p not in ("loss", "accuracy")
    )
    panels = panels[:6]
    fig = Figure(figsize=(4.5 * max(1, len(panels)), 3.4))
    axes = fig.subplots(1, max(1, len(panels)))
    axes = np.atleast_1d(axes)
    for ax, panel in zip(axes, panels, strict=False):
        for name, (xs, ys) in sorted(series[panel].items()):
            ax.plot(xs, ys, label=name, marker="o" if len(xs) < 30 else None, markersize=3)
        ax.set_xlabel("step")
        ax.set_title(panel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = os.path.join(workdir, filename)
    fig.savefig(path, dpi=110)
    return path


def plot_runs(ax, workdir: str, runs, key: str, *, scale: float = 1.0, ylabel: str | None = None,
              **plot_kw) -> None:  # fmt: skip
    """Draws the logged scalar ``key`` of each run in ``runs`` (``<workdir>/<run>/metrics.jsonl``)
    against step on the matplotlib axes ``ax``, one labelled line per run, times ``scale``
    (e.g. 100 for percent). Steps where the run did not log ``key`` are skipped."""
    for run in runs:
        recs = [r for r in read_metrics(os.path.join(workdir, run)) if key in r]
        ax.plot([r["step"] for r in recs], [scale * r[key] for r in recs], label=run, **plot_kw)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel or key)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def save_figure(fig, workdir: str, filename: str = "summary.png") -> str:
    """``fig.tight_layout()``, then saves it as ``<workdir>/<filename>`` (110 dpi); returns the
    path."""
    fig.tight_layout()
    path = os.path.join(workdir, filename)
    fig.savefig(path, dpi=110)
    return path
