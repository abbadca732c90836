"""The plain-CNN reference: a textbook convolutional classifier, the floor the MLT must clear.

  PlainCNN          blocks of two 3x3 ConvBN (conv, BatchNorm, ReLU) and a 2x2 max pool;
                    (B, H, W, 3) -> (B, H / 2^k, W / 2^k, widths[-1]) for k blocks.
  PooledClassifier  backbone -> global average pool -> dropout -> one dense layer: logits (B, L).

Nothing here is tuned: four blocks of (32, 64, 128, 128) channels, dropout 0.2 and a sigmoid
dense layer are the standard small conv net, trained with a standard recipe (configs/
plain_cnn.py: Adam 1e-3, plain BCE, small translations). It is built, trained, checkpointed
and scored by the same pipeline as the MLT (`config.model.head = 'pooled'`), so the two are
compared on the same frames, by the same metric.
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from mlt_flax.models import pooling
from mlt_flax.models.inception_v3 import ConvBN

NUM_BLOCKS = 4
POOL = 2  # each block ends in a POOL x POOL max pool of stride POOL
MIN_SIZE = POOL**NUM_BLOCKS  # the smallest input giving a 1x1 feature map
CLASSIFIER = "classifier"  # the dense layer's name: it trains in the backbone's group


def output_size(size: int) -> int:
  """Spatial size of the feature map for an input of `size` pixels."""
  return size // POOL**NUM_BLOCKS


class PlainCNN(nn.Module):
  """__call__(images (B, H, W, 3) in [-1, 1], train) -> (B, h, w, widths[-1])."""
  widths: Sequence[int] = (32, 64, 128, 128)
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32
  fold_bn: bool = False  # every ConvBN in its folded inference form (models/fold.py)

  @nn.compact
  def __call__(self, x, train: bool = False):
    if len(self.widths) != NUM_BLOCKS:
      raise ValueError(f"PlainCNN.widths needs {NUM_BLOCKS} entries, got {self.widths}")
    c = functools.partial(ConvBN, kernel=(3, 3), bn_momentum=self.bn_momentum,
                          bn_epsilon=self.bn_epsilon, bn_axis_name=self.bn_axis_name,
                          dtype=self.dtype, fold_bn=self.fold_bn)
    x = x.astype(self.dtype)
    for i, width in enumerate(self.widths):
      x = c(width, name=f"block{i}_conv0")(x, train)
      x = c(width, name=f"block{i}_conv1")(x, train)
      x = (pooling.max_pool(x, POOL, POOL) if train  # XLA's pool, a cheaper CPU gradient
           else nn.max_pool(x, (POOL, POOL), strides=(POOL, POOL)))
    return x


class PooledClassifier(nn.Module):
  """__call__(images (B, H, W, 3) in [-1, 1], train) -> logits (B, L) in float32."""
  backbone: nn.Module
  num_labels: int
  dropout_rate: float = 0.2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images, train: bool = False):
    features = self.backbone(images, train).mean(axis=(1, 2))
    features = nn.Dropout(self.dropout_rate, deterministic=not train)(features)
    return nn.Dense(self.num_labels, dtype=self.dtype, name=CLASSIFIER)(features).astype(
        jnp.float32)
