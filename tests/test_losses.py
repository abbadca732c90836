"""Each loss term against a plain numpy transcription of docs/recipe.md "Loss"."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import abaw3
from mlt_flax import losses


def numpy_weights(labels):
  # w_t = T (1/f_t) / sum_k (1/f_k), f_t = positive rate over valid entries; f_t = 0 -> w_t = 0
  t = labels.shape[1]
  f = np.array([(labels[:, j] == 1).sum() / max((labels[:, j] >= 0).sum(), 1) for j in range(t)])
  inv = np.array([1 / x if x > 0 else 0.0 for x in f])
  return t * inv / inv.sum()


def numpy_loss(logits, y, m, w, lam=0.5):
  p = 1 / (1 + np.exp(-logits))
  bce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
  dice = 1 - (2 * y * p + 1) / (y**2 + p**2 + 1)
  b, t = logits.shape
  bce_term = sum(m[i, j] * w[j] * bce[i, j] for i in range(b) for j in range(t)) / (b * t)
  dice_term = sum(m[i, j] * w[j] * dice[i, j] for i in range(b) for j in range(t)) / (b * t)
  return bce_term, dice_term, bce_term + lam * dice_term


def test_frequency_weights():
  rng = np.random.default_rng(0)
  labels = rng.choice([-1, 0, 1], size=(500, 6), p=[0.2, 0.6, 0.2])
  labels[:, 2] = np.where(labels[:, 2] == 1, 0, labels[:, 2])  # AU never active: weight 0
  w = losses.frequency_weights(labels)
  np.testing.assert_allclose(w, numpy_weights(labels), rtol=1e-6)
  assert w[2] == 0 and np.isclose(w.sum(), 6)  # weights sum to T over AUs that occur


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_total_loss_matches_the_formula_with_masks_and_soft_labels(seed):
  rng = np.random.default_rng(seed)
  logits = rng.normal(0, 3, (7, 5))
  raw = rng.choice([-1, 0, 1], size=(7, 5))
  mask = (raw >= 0).astype(np.float32)
  soft = np.where(raw >= 0, raw * 0.9 + 0.05, 0.0) * rng.uniform(0.5, 1, (7, 5))  # soft targets
  w = rng.uniform(0.1, 3, 5).astype(np.float32)
  cfg = abaw3.get_config().loss
  loss, terms = losses.mlt_loss(jnp.asarray(logits), jnp.asarray(soft), jnp.asarray(mask),
                                jnp.asarray(w), cfg)
  bce, dice, total = numpy_loss(logits, soft, mask, w)
  np.testing.assert_allclose(terms["bce"], bce, rtol=1e-5)
  np.testing.assert_allclose(terms["dice"], dice, rtol=1e-5)
  np.testing.assert_allclose(loss, total, rtol=1e-5)


@pytest.mark.parametrize("bce,fw,dice", [(True, True, True), (True, True, False),
                                         (True, False, True), (True, False, False),
                                         (False, True, True)])
def test_each_term_is_switchable(bce, fw, dice):
  rng = np.random.default_rng(3)
  logits, y = rng.normal(size=(4, 3)), rng.integers(0, 2, (4, 3)).astype(np.float32)
  m, w = np.ones((4, 3), np.float32), np.array([0.5, 1.0, 1.5], np.float32)
  cfg = abaw3.get_config().loss
  cfg.bce, cfg.frequency_weights, cfg.dice = bce, fw, dice
  loss, _ = losses.mlt_loss(jnp.asarray(logits), jnp.asarray(y), jnp.asarray(m),
                            jnp.asarray(w), cfg)
  b, d, _ = numpy_loss(logits, y, m, w if fw else np.ones(3))
  np.testing.assert_allclose(loss, bce * b + dice * 0.5 * d, rtol=1e-5)


def test_masked_entries_do_not_count_but_stay_in_the_mean():
  logits = jnp.array([[2.0, -40.0]])
  y = jnp.array([[1.0, 1.0]])  # the second entry would cost a fortune...
  mask = jnp.array([[1.0, 0.0]])  # ...but it is not annotated
  loss, terms = losses.mlt_loss(logits, y, mask, jnp.ones(2), abaw3.get_config().loss)
  np.testing.assert_allclose(terms["bce"], np.log1p(np.exp(-2.0)) / 2, rtol=1e-6)  # / (B T)


@pytest.mark.parametrize("z", [-80.0, 80.0])
def test_gradient_is_finite_at_saturated_probabilities(z):
  cfg = abaw3.get_config().loss
  for y in (0.0, 0.05, 0.95, 1.0):
    g = jax.grad(lambda l: losses.mlt_loss(l, jnp.full((1, 1), y), jnp.ones((1, 1)),
                                           jnp.ones(1), cfg)[0])(jnp.full((1, 1), z))
    assert np.isfinite(g).all()


def test_weights_of_aus_never_annotated_or_never_active_are_zero():
  # AU 0 never annotated (all -1), AU 1 never active, AU 2 active in 1 of its 2 valid frames,
  # AU 3 in 1 of 4: f = (0, 0, 1/2, 1/4), 1/f = (-, -, 2, 4), w = 4 (0, 0, 2/6, 4/6).
  labels = np.array([[-1, 0, 1, 1], [-1, 0, 0, 0], [-1, 0, -1, 0], [-1, 0, -1, 0]])
  np.testing.assert_allclose(losses.frequency_weights(labels), [0, 0, 4 / 3, 8 / 3], rtol=1e-6)
  # An AU annotated on one frame only, where it is active: f = 1, like an AU active on all.
  one = np.array([[1, 1], [-1, 0], [-1, 1], [-1, 0]])  # f = (1, 1/2): w = 2 (1, 2) / 3
  np.testing.assert_allclose(losses.frequency_weights(one), [2 / 3, 4 / 3], rtol=1e-6)
  # No AU active anywhere: every weight 0 (not a division by zero).
  np.testing.assert_array_equal(losses.frequency_weights(np.zeros((3, 4), int)), np.zeros(4))
  np.testing.assert_array_equal(losses.weights_from_positive_rate([0.0, 0.0]), [0.0, 0.0])
  np.testing.assert_allclose(losses.weights_from_positive_rate([0.5, 0.25, 0.0]),
                             3 * np.array([2, 4, 0]) / 6, rtol=1e-6)
