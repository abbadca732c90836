"""Max pooling whose gradient is cheap on CPU: the same values and gradient as XLA's.

`flax.linen.max_pool` is `lax.reduce_window(max)`, and its gradient is XLA's select-and-
scatter, which XLA:CPU expands into an iota of the input's shape, a reduce-window over
(value, index) pairs and a scatter. In the paper's model that expansion was 3.5 s of a
17 s one-core training step (BENCHMARKS.md, "Where the time goes"): more than every
BatchNorm. `max_pool` here computes the forward pass as the maximum of the window's k x k
strided slices and its gradient with a custom VJP: each window's gradient goes to the first
of its taps (row-major, as select-and-scatter's `ge` selection picks) that equals the
window's maximum, scattered back with strided pads. Values are identical; gradients equal
XLA's up to the order in which overlapping windows' contributions are summed (~1e-7
relative). On one core it is 4-9x faster than XLA's path, forward and backward, on each of
the InceptionV3 trunk's pools (tests/test_pooling.py checks the equalities).
"""

import functools

import jax
from jax import lax
import jax.numpy as jnp


def _padding(size: int, window: int, stride: int, padding: str) -> tuple[int, int]:
  """(low, high) padding of one spatial axis, as lax.reduce_window's 'SAME' / 'VALID'."""
  if padding == "VALID":
    return 0, 0
  out = -(-size // stride)
  total = max((out - 1) * stride + window - size, 0)
  return total // 2, total - total // 2


def _padded(x, window: int, stride: int, padding: str):
  pads = [_padding(x.shape[a], window, stride, padding) for a in (1, 2)]
  if any(p != (0, 0) for p in pads):
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-jnp.inf)
  return x, pads


def _taps(x, window: int, stride: int):
  """The window's taps (i, j, slice), row-major: slice[b, r, c] = x[b, r*stride+i, c*stride+j]."""
  out_h = (x.shape[1] - window) // stride + 1
  out_w = (x.shape[2] - window) // stride + 1
  for i in range(window):
    for j in range(window):
      yield i, j, lax.slice(
          x, (0, i, j, 0),
          (x.shape[0], i + (out_h - 1) * stride + 1, j + (out_w - 1) * stride + 1, x.shape[3]),
          (1, stride, stride, 1))


def _max_over_taps(x, window: int, stride: int, padding: str):
  padded, _ = _padded(x, window, stride, padding)
  return functools.reduce(jnp.maximum, (tap for _, _, tap in _taps(padded, window, stride)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def max_pool(x, window: int, stride: int, padding: str = "VALID"):
  """x (B, H, W, C) -> the maximum over window x window patches at `stride` ('VALID'/'SAME')."""
  return _max_over_taps(x, window, stride, padding)


def _max_pool_fwd(x, window, stride, padding):
  y = _max_over_taps(x, window, stride, padding)
  return y, (x, y)


def _max_pool_bwd(window, stride, padding, residuals, g):
  x, y = residuals
  padded, pads = _padded(x, window, stride, padding)
  h, w = padded.shape[1], padded.shape[2]
  zero = jnp.zeros((), g.dtype)
  taken = None  # windows whose maximum an earlier tap already took
  grad = None
  for i, j, tap in _taps(padded, window, stride):
    hit = tap == y
    if taken is not None:
      hit = hit & ~taken
    taken = hit if taken is None else taken | hit
    # Scatter this tap's share back to its input positions: a strided pad.
    share = lax.pad(jnp.where(hit, g, zero), zero, (
        (0, 0, 0), (i, h - i - (y.shape[1] - 1) * stride - 1, stride - 1),
        (j, w - j - (y.shape[2] - 1) * stride - 1, stride - 1), (0, 0, 0)))
    grad = share if grad is None else grad + share
  (top, bottom), (left, right) = pads
  return (grad[:, top:h - bottom, left:w - right, :],)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)
