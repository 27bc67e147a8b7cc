"""Float32 arithmetic with a fixed rounding pattern, immune to XLA's mul-add contraction.

XLA on CPU contracts ``a * b + c`` into a fused multiply-add, while torchvision's kernels round
some products and fuse others. To reproduce torchvision bit for bit we never leave a rounded
product next to an addition: every product is split into exact partial products (Veltkamp/Dekker
split at 12 mantissa bits, done with bit masks), so contracted or not, the result is the same.

- ``mul(a, b)``: ``a * b`` rounded once (as a separate multiply instruction would).
- ``fma(a, b, c)``: ``a * b + c`` rounded once (as a fused multiply-add would).

Both are exact (correctly rounded) when one operand has at most 12 significant bits (uint8 pixel
values, half-integer pixel coordinates, small integers) and otherwise correct except within
about 2**-36 relative of a rounding midpoint.
"""

import jax
import jax.numpy as jnp
from jax import lax

_HI_MASK = 0xFFFFF000  # keeps sign, exponent and the top 11 stored mantissa bits (12 significant)


def split(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Split float32 ``x`` into ``hi + lo == x`` with at most 12 significant bits each."""
    x = jnp.asarray(x, jnp.float32)
    bits = lax.bitcast_convert_type(x, jnp.uint32)
    hi = lax.bitcast_convert_type(bits & jnp.uint32(_HI_MASK), jnp.float32)
    return hi, x - hi


def _two_sum(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    s = a + b
    bb = s - a
    err = (a - (s - bb)) + (b - bb)
    return s, err


def fma(a: jax.Array, b: jax.Array, c: jax.Array) -> jax.Array:
    """``a * b + c`` in float32 with a single rounding."""
    ah, al = split(a)
    bh, bl = split(b)
    c = jnp.asarray(c, jnp.float32)
    s, err = _two_sum(c, ah * bh)
    tail = ((ah * bl + al * bh) + al * bl) + err
    return s + tail


def mul(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a * b`` in float32, rounded once, never fused with a later addition."""
    ah, al = split(a)
    bh, bl = split(b)
    return ah * bh + ((ah * bl + al * bh) + al * bl)


def div(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a / b`` in float32, correctly rounded (IEEE division) for finite non-zero ``b``.

    XLA may rewrite a division by a broadcast scalar as a multiplication by its reciprocal,
    which is off by one ulp now and then; this picks, among the XLA quotient and its two float32
    neighbours, the one with the smallest exact residual ``|a - q * b|``.
    """
    a = jnp.asarray(a, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    q = a / b
    lower = jnp.nextafter(q, jnp.float32(-jnp.inf))
    upper = jnp.nextafter(q, jnp.float32(jnp.inf))
    best = q
    best_err = jnp.abs(fma(-q, b, a))
    for cand in (lower, upper):
        err = jnp.abs(fma(-cand, b, a))
        better = err < best_err
        best = jnp.where(better, cand, best)
        best_err = jnp.where(better, err, best_err)
    return best
