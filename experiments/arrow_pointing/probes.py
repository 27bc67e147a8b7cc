"""The probes behind the experiment README: the cpu variant with one thing changed at a time.

Each probe is the experiment itself (``train.train_and_evaluate``) on ``:cpu`` plus overrides,
one model, evaluated every ``eval_every`` steps; the script prints one JSON line per probe and
writes ``<workdir>/probes.md``, a markdown table of train loss and validation accuracy over the
steps, and ``<workdir>/probes.png`` with the accuracy curves::

    python -m experiments.arrow_pointing.probes --workdir=runs/arrow_probes      # every probe
    python -m experiments.arrow_pointing.probes --workdir=runs/arrow_probes --probes vit,plstm

A probe whose workdir holds a finished run is restored and evaluated, not trained again.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass

from augpar.train import read_metrics
from experiments.arrow_pointing import train as ap_train
from experiments.arrow_pointing.configs import default


@dataclass(frozen=True)
class Probe:
    model: str
    overrides: str  # appended to ":cpu"
    what: str


# The cpu variant, then each cause that mattered undone on its own, then the pre-fix settings.
PROBES: dict[str, Probe] = {
    "vit": Probe("vit", "", "cpu variant (fixed stroke, [0, 1] input, SmallInit head, sincos2d)"),
    "vit_zero_head": Probe("vit", "vit.head_init=zero", "zero-initialised head"),
    "vit_learned_pos": Probe(
        "vit", "vit.position_embedding=learned", "learned position embedding (init std 0.02)"
    ),
    "vit_scaled_stroke": Probe("vit", "data.stroke=scaled", "strokes scaled to 0.67-1 px"),
    "vit_symmetric": Probe("vit", "data.scaling=symmetric", "[-1, 1] input"),
    "vit_ink": Probe("vit", "data.scaling=ink", "ink input (background 0)"),
    "plstm": Probe("plstm", "", "cpu variant (dim 64, 4 heads, 1 PD block)"),
    "plstm_zero_head": Probe("plstm", "plstm.head_init=zero", "zero-initialised head"),
    "plstm_dim32": Probe("plstm", "plstm.dim=32,plstm.num_heads=2", "dim 32, 2 heads"),
    "plstm_scaled_stroke": Probe("plstm", "data.stroke=scaled", "strokes scaled to 0.67-1 px"),
}


def probe_config(name: str, *, steps: int | None, eval_every: int, seed: int):
    """The experiment config of probe ``name``: ``:cpu`` + its overrides, one model."""
    if name not in PROBES:
        raise ValueError(f"unknown probe {name!r}; allowed: {sorted(PROBES)}")
    probe = PROBES[name]
    arg = ",".join(
        p for p in ("cpu", f"models={probe.model}", probe.overrides, f"seed={seed}") if p
    )
    config = default.get_config(arg)
    if steps:
        config.model_steps[probe.model] = steps
    config.eval_every = eval_every
    return config


def curve(workdir: str) -> list[dict]:
    """``[{step, loss, val, val_ext}]`` at each evaluation of a finished run."""
    records = read_metrics(workdir)
    out = []
    for r in records:
        if "eval/val/accuracy" not in r:
            continue
        losses = [q["train/loss"] for q in records if "train/loss" in q and q["step"] <= r["step"]]
        out.append(
            {
                "step": r["step"],
                "loss": round(losses[-1], 4) if losses else None,
                "val": round(100 * r["eval/val/accuracy"], 2),
                "val_ext": round(100 * r.get("eval/val_ext/accuracy", float("nan")), 2),
            }
        )
    return out


def markdown(rows: dict[str, list[dict]]) -> str:
    """One table row per probe: loss / val accuracy at every evaluated step, extrapolation last."""
    steps = sorted({p["step"] for r in rows.values() for p in r})
    head = "| probe | what | " + " | ".join(f"step {s}" for s in steps) + " | 128 px |"
    lines = [head, "|" + "---|" * (len(steps) + 3)]
    for name, points in rows.items():
        at = {p["step"]: p for p in points}
        cells = [f"{at[s]['loss']:.3f} / {at[s]['val']:.1f}" if s in at else "" for s in steps]
        ext = f"{points[-1]['val_ext']:.1f}" if points else ""
        lines.append(f"| `{name}` | {PROBES[name].what} | " + " | ".join(cells) + f" | {ext} |")
    return "\n".join(lines)


def plot(rows: dict[str, list[dict]], path: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for name, points in rows.items():
        ls = "-" if PROBES[name].model == "vit" else "--"
        ax.plot([p["step"] for p in points], [p["val"] for p in points], ls, label=name)
    ax.axhline(50, color="gray", lw=1, ls=":")
    ax.set_xlabel("step")
    ax.set_ylabel("val accuracy (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--probes", default=",".join(PROBES))
    parser.add_argument("--steps", type=int, default=0, help="0: the cpu variant's steps")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    names = [n for n in args.probes.split(",") if n]
    for n in names:  # fail before any training
        probe_config(n, steps=args.steps, eval_every=args.eval_every, seed=args.seed)
    rows = {}
    for name in names:
        config = probe_config(name, steps=args.steps, eval_every=args.eval_every, seed=args.seed)
        workdir = os.path.join(args.workdir, name)
        ap_train.train_and_evaluate(config, workdir)
        rows[name] = curve(os.path.join(workdir, PROBES[name].model))
        print(json.dumps({"probe": name, "curve": rows[name]}), flush=True)
    os.makedirs(args.workdir, exist_ok=True)
    with open(os.path.join(args.workdir, "probes.md"), "w") as f:
        f.write(markdown(rows) + "\n")
    plot(rows, os.path.join(args.workdir, "probes.png"))
    print(markdown(rows))


if __name__ == "__main__":
    main()
