"""models/pooling.max_pool: XLA's max pool, values and gradient, without select-and-scatter."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlt_flax.models import pooling

# (input shape, window, stride, padding): the InceptionV3 trunk's pools and the plain CNN's.
CASES = [((2, 15, 15, 4), 3, 2, "VALID"), ((2, 9, 9, 4), 3, 2, "VALID"),
         ((2, 8, 8, 4), 3, 1, "SAME"), ((2, 16, 16, 4), 2, 2, "VALID"),
         ((2, 7, 9, 3), 3, 2, "SAME")]


def xla_max_pool(x, window, stride, padding):
  return nn.max_pool(x, (window, window), strides=(stride, stride), padding=padding)


def _grads(fn, x, g):
  return jax.vjp(fn, x)[1](g)[0]


@pytest.mark.parametrize("shape,window,stride,padding", CASES)
def test_values_and_gradient_are_xlas(shape, window, stride, padding):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=shape), jnp.float32)
  ours = lambda v: pooling.max_pool(v, window, stride, padding)
  theirs = lambda v: xla_max_pool(v, window, stride, padding)
  y = ours(x)
  np.testing.assert_array_equal(y, theirs(x))
  g = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
  np.testing.assert_allclose(_grads(ours, x, g), _grads(theirs, x, g), atol=1e-6)


@pytest.mark.parametrize("shape,window,stride,padding", CASES)
def test_a_tie_gives_the_gradient_to_the_same_tap_as_xla(shape, window, stride, padding):
  # After a ReLU whole windows are zero: each window's gradient must still go to one input,
  # the one XLA's select-and-scatter picks.
  rng = np.random.default_rng(1)
  x = jnp.asarray(np.maximum(rng.normal(size=shape), 0.0) * (rng.random(shape) < 0.3),
                  jnp.float32)
  y = pooling.max_pool(x, window, stride, padding)
  g = jnp.asarray(rng.integers(1, 5, y.shape), jnp.float32)  # exact sums: no rounding
  np.testing.assert_array_equal(
      _grads(lambda v: pooling.max_pool(v, window, stride, padding), x, g),
      _grads(lambda v: xla_max_pool(v, window, stride, padding), x, g))


def test_it_jits_and_differentiates_under_bfloat16():
  x = jnp.asarray(np.random.default_rng(2).normal(size=(1, 9, 9, 2)), jnp.bfloat16)
  grad = jax.jit(jax.grad(lambda v: pooling.max_pool(v, 3, 2).astype(jnp.float32).sum()))(x)
  # Each of the 4 x 4 windows, per channel, sends its gradient of 1 to one input.
  assert grad.dtype == jnp.dtype(jnp.bfloat16)
  assert float(grad.astype(jnp.float32).sum()) == 4 * 4 * 2
