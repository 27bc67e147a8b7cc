"""Config helpers shared by every experiment: parsing of ``default.py:cpu,key=value,...``
arguments, overrides, the loop settings and the AdamW-cosine ``optim`` block."""

from __future__ import annotations

import ast

import ml_collections


def parse_arg(arg: str | None, *, variants: tuple[str, ...], default: str) -> tuple[str, dict]:
    """Splits ``"variant,key=value,..."`` into the variant name and typed overrides.

    Raises:
      ValueError: for an unknown variant or a malformed ``key=value``.
    """
    parts = [p for p in (arg or default).split(",") if p]
    variant = parts[0] if parts and "=" not in parts[0] else default
    if variant not in variants:
        raise ValueError(f"Unknown config variant {variant!r}; allowed: {list(variants)}.")
    overrides = {}
    for part in parts[1:] if parts and "=" not in parts[0] else parts:
        if "=" not in part:
            raise ValueError(f"Config override {part!r} is not of the form key=value.")
        key, value = part.split("=", 1)
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    return variant, overrides


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict) -> None:
    """Sets dotted keys (``optim.lr=1e-3``); unknown keys raise ``ValueError``."""
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            if p not in node:
                raise ValueError(f"Unknown config key {key!r}.")
            node = node[p]
        if leaf not in node:
            raise ValueError(f"Unknown config key {key!r}; known here: {sorted(node.keys())}.")
        node[leaf] = value


def loop_config(config: ml_collections.ConfigDict, num_steps: int):
    """The harness's ``LoopConfig`` from an experiment config's logging/checkpoint fields."""
    from augpar.train import LoopConfig  # configs themselves load without JAX

    return LoopConfig(
        num_steps=num_steps,
        log_every=config.log_every,
        eval_every=config.eval_every,
        checkpoint_every=config.checkpoint_every,
        keep_checkpoints=config.keep_checkpoints,
    )


def adamw_cosine_config(
    lr: float,
    *,
    warmup_fraction: float = 0.05,
    final_lr_fraction: float = 1e-3,
    weight_decay: float = 0.05,
    clip: float = 1.0,
) -> ml_collections.ConfigDict:
    """The ``optim`` block read by :func:`augpar.train.adamw_cosine` (AdamW, linear warm-up for
    ``warmup_fraction`` of the steps, cosine decay to ``final_lr_fraction * lr``, global-norm
    clipping at ``clip``)."""
    return ml_collections.ConfigDict(
        dict(lr=lr, warmup_fraction=warmup_fraction, final_lr_fraction=final_lr_fraction,
             weight_decay=weight_decay, clip=clip)
    )  # fmt: skip
