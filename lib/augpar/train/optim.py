"""The optimizer most experiments use: AdamW with linear warm-up, cosine decay and clipping."""

from __future__ import annotations

import optax

from augpar.train.state import weight_decay_mask


def adamw_cosine(
    lr: float,
    num_steps: int,
    *,
    warmup_fraction: float,
    final_lr_fraction: float,
    weight_decay: float,
    clip: float,
) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW (b1 0.9, b2 0.999) on a warm-up + cosine schedule.

    The rate rises linearly from 0 to ``lr`` over ``max(1, warmup_fraction * num_steps)`` steps,
    then follows a cosine to ``lr * final_lr_fraction`` at ``num_steps``. Weight decay applies to
    kernels and embeddings only (:func:`augpar.train.weight_decay_mask`; not biases or norms).
    """
    if lr <= 0 or num_steps < 1 or not 0 <= warmup_fraction < 1 or clip <= 0:
        raise ValueError(
            f"adamw_cosine: lr={lr}, num_steps={num_steps}, warmup_fraction={warmup_fraction}, "
            f"clip={clip}; allowed: lr > 0, num_steps >= 1, 0 <= warmup_fraction < 1, clip > 0"
        )
    warmup = max(1, int(warmup_fraction * num_steps))
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, lr, warmup, max(num_steps, warmup + 1), end_value=lr * final_lr_fraction
    )
    return optax.chain(
        optax.clip_by_global_norm(clip),
        optax.adamw(schedule, b1=0.9, b2=0.999, weight_decay=weight_decay, mask=weight_decay_mask),
    )
