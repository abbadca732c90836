"""The MLT training loss: frequency-weighted BCE + lambda * per-sample, per-AU weighted Dice.

docs/recipe.md, "Loss". With logits z (B, T), p = sigmoid(z), targets y (B, T) in [0, 1] (soft after
mixup and label smoothing), a mask m (B, T) (0 where the label is -1) and AU weights w (T,):
  BCE  = mean_{b,t} m w_t [-y log p - (1 - y) log(1 - p)]
  Dice = mean_{b,t} m w_t [1 - (2 y p + 1) / (y^2 + p^2 + 1)]
  loss = [bce] BCE + [dice] lambda Dice
Means run over ALL B x T entries, masked ones counting as zeros, as the authors' code does.
(The recipe words the BCE as "summed over AUs, averaged over the batch": that is T times this
mean; with Adam's scale invariance the two train alike, and the mean keeps BCE and Dice on
the same footing.) BCE is computed from logits, so gradients stay finite as p -> 0 or 1.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax


def weights_from_positive_rate(rate) -> np.ndarray:
  """w_t = T (1/f_t) / sum_k (1/f_k) from the positive rates f (T,); f_t = 0 gives w_t = 0."""
  rate = np.asarray(rate, np.float64)
  inv = np.divide(1.0, rate, out=np.zeros_like(rate), where=rate > 0)
  if inv.sum() == 0:
    return np.zeros(len(rate), np.float32)
  return (len(rate) * inv / inv.sum()).astype(np.float32)


def frequency_weights(labels: np.ndarray) -> np.ndarray:
  """Frequency weights (T,) from labels (N, T) in {-1, 0, 1}.

  f_t is the positive rate of AU t over its valid (!= -1) entries.
  """
  labels = np.asarray(labels)
  counts = (labels >= 0).sum(0)
  rate = np.divide((labels == 1).sum(0), counts, out=np.zeros(labels.shape[1]),
                   where=counts > 0)
  return weights_from_positive_rate(rate)


def weighted_bce(logits, targets, mask, weights):
  """Mean over B x T of m w_t BCE(y, sigmoid(z)). Shapes (B, T), (B, T), (B, T), (T,)."""
  bce = optax.sigmoid_binary_cross_entropy(logits, targets)
  return jnp.mean(mask * weights * bce)


def weighted_dice(logits, targets, mask, weights):
  """Mean over B x T of m w_t [1 - (2 y p + 1) / (y^2 + p^2 + 1)], per sample and per AU."""
  p = jax.nn.sigmoid(logits)
  dice = 1.0 - (2.0 * targets * p + 1.0) / (targets**2 + p**2 + 1.0)
  return jnp.mean(mask * weights * dice)


def mlt_loss(logits, targets, mask, weights, cfg: ml_collections.ConfigDict):
  """The configured total loss and its terms. cfg is config.loss.

  logits (B, T) any float dtype (computed in float32); targets, mask (B, T); weights (T,) the
  frequency weights (ignored, i.e. all ones, when cfg.frequency_weights is False).
  Returns (loss scalar, {'bce': ..., 'dice': ...}).
  """
  logits = logits.astype(jnp.float32)
  w = weights if cfg.frequency_weights else jnp.ones_like(weights)
  terms = {"bce": weighted_bce(logits, targets, mask, w),
           "dice": weighted_dice(logits, targets, mask, w)}
  loss = jnp.zeros((), jnp.float32)
  if cfg.bce:
    loss += terms["bce"]
  if cfg.dice:
    loss += cfg.dice_weight * terms["dice"]
  return loss, terms
