"""AugMix on a batch (per-image chains and weights) and its Jensen-Shannon consistency loss."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, UInt8

from augpar.augment import _color, _exact
from augpar.augment.policies.apply import _check_batch, _check_common, apply_ops, sample_ops
from augpar.augment.policies.tables import _AUGMIX_BINS, AUGMIX_OPS


def augmix(
    key: jax.Array,
    images: UInt8[Array, "b h w c"],
    *,
    severity: int = 3,
    mixture_width: int = 3,
    chain_depth: int = -1,
    alpha: float = 1.0,
    all_ops: bool = True,
    interpolation: str = "bilinear",
    fill: float | tuple[float, ...] | None = None,
) -> UInt8[Array, "b h w c"]:
    """AugMix: ``trunc(m0 * x + sum_i w_i * chain_i(x))`` with per-image random chains.

    Per image: ``(m0, m1) ~ Dirichlet(alpha, alpha)``, ``w = m1 * Dirichlet(alpha * 1_width)``;
    each chain has depth ``chain_depth`` or, if <= 0, uniform in {1, 2, 3}; each chain op is
    uniform over ``AUGMIX_OPS`` (the first 9 if not ``all_ops``) at a uniform bin in
    ``[0, severity)`` of torchvision's 10-bin tables, with a random sign. The float32 mix
    follows torchvision (each ``w_i * chain_i`` rounded, then added; truncated to uint8).

    Args:
      key: PRNG key.
      images: uint8 ``[B, H, W, C]``, C in {1, 3}.
      severity: 1..10.
      mixture_width: number of chains, >= 1.
      chain_depth: ops per chain (> 0), or <= 0 for a uniform depth in {1, 2, 3} per chain.
      alpha: Dirichlet/Beta concentration, > 0.
      all_ops: include Brightness/Color/Contrast/Sharpness.
      interpolation: "bilinear" (torchvision's default for AugMix) or "nearest".
      fill: None (zero padding), a number or per-channel numbers.

    Returns:
      uint8 ``[B, H, W, C]``.
    """
    _check_batch(images)
    _check_common(interpolation, _AUGMIX_BINS)
    if not isinstance(severity, int) or not 1 <= severity <= _AUGMIX_BINS:
        raise ValueError(f"severity must be an int in [1, {_AUGMIX_BINS}], got {severity!r}")
    if not isinstance(mixture_width, int) or mixture_width < 1:
        raise ValueError(f"mixture_width must be an int >= 1, got {mixture_width!r}")
    if not isinstance(chain_depth, int):
        raise ValueError(f"chain_depth must be an int, got {chain_depth!r}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    b = images.shape[0]
    n_ops = len(AUGMIX_OPS) if all_ops else 9
    identity = len(AUGMIX_OPS)
    max_depth = chain_depth if chain_depth > 0 else 3
    key_weights, key_depth, key_ops = jax.random.split(key, 3)
    m0, weights = augmix_weights(key_weights, b, mixture_width=mixture_width, alpha=alpha)
    if chain_depth > 0:
        depth = jnp.full((mixture_width, b), chain_depth, jnp.int32)
    else:
        depth = jax.random.randint(key_depth, (mixture_width, b), 1, 4, dtype=jnp.int32)
    mix = _exact_mul_batch(images, m0)
    chain_keys = jax.random.split(key_ops, mixture_width)

    def chain(mix, xs):
        chain_key, chain_depth_b, weight = xs
        draw = sample_ops(
            chain_key,
            b,
            num_layers=max_depth,
            num_ops=n_ops,
            num_magnitude_bins=_AUGMIX_BINS,
            max_bin=severity,
        )
        active = jnp.arange(max_depth, dtype=jnp.int32)[:, None] < chain_depth_b[None, :]
        draw = draw._replace(op=jnp.where(active, draw.op, identity))
        aug = apply_ops(
            images,
            draw,
            space="augmix",
            num_magnitude_bins=_AUGMIX_BINS,
            fill=fill,
            interpolation=interpolation,
            num_drawn_ops=n_ops,
        )
        return mix + _exact_mul_batch(aug, weight), None

    mix, _ = jax.lax.scan(chain, mix, (chain_keys, depth, weights.T))
    return _color.truncate_u8(mix)


def augmix_weights(
    key: jax.Array, batch: int, *, mixture_width: int = 3, alpha: float = 1.0
) -> tuple[Float[Array, " b"], Float[Array, "b width"]]:
    """AugMix mixing weights per image, as torchvision draws them.

    ``(m0, m1) ~ Dirichlet(alpha, alpha)`` (i.e. ``m1 ~ Beta(alpha, alpha)``) and
    ``w = m1 * Dirichlet(alpha * 1_width)``, so ``m0 + sum(w) == 1``.

    Returns:
      ``m0`` float32 ``[B]`` (weight of the original image) and ``w`` float32 ``[B, width]``.
    """
    key_m, key_w = jax.random.split(key)
    m = jax.random.dirichlet(key_m, jnp.full((2,), alpha, jnp.float32), (batch,))
    w = jax.random.dirichlet(key_w, jnp.full((mixture_width,), alpha, jnp.float32), (batch,))
    return m[:, 0], w * m[:, 1:2]


def _exact_mul_batch(images, weight):
    """float32 ``weight[b] * images[b]`` rounded once (not fused with the following add)."""
    w = weight[:, None, None, None]
    return _exact.mul(images.astype(jnp.float32), jnp.broadcast_to(w, images.shape))


def augmix_js_loss(
    logits_clean: Float[Array, "b k"],
    logits_aug1: Float[Array, "b k"],
    logits_aug2: Float[Array, "b k"],
) -> Float[Array, ""]:
    """AugMix's Jensen-Shannon consistency term (multiply by lambda = 12 in the paper).

    ``JS = mean_b [KL(p_c || M) + KL(p_1 || M) + KL(p_2 || M)] / 3`` with
    ``M = clip((p_c + p_1 + p_2) / 3, 1e-7, 1)``, as in the reference training code.

    Args:
      logits_clean, logits_aug1, logits_aug2: float ``[B, K]`` logits of the clean image and two
        AugMix views.

    Returns:
      float32 scalar >= 0; 0 iff the three predictive distributions agree.
    """
    shapes = {tuple(x.shape) for x in (logits_clean, logits_aug1, logits_aug2)}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"logits must be three arrays of equal shape [B, K], got {shapes}")
    logp = [
        jax.nn.log_softmax(x.astype(jnp.float32), axis=-1)
        for x in (logits_clean, logits_aug1, logits_aug2)
    ]
    probs = [jnp.exp(lp) for lp in logp]
    log_m = jnp.log(jnp.clip((probs[0] + probs[1] + probs[2]) / 3.0, 1e-7, 1.0))
    kl = [jnp.sum(p * (lp - log_m), axis=-1) for p, lp in zip(probs, logp, strict=True)]
    return jnp.mean(kl[0] + kl[1] + kl[2]) / 3.0
