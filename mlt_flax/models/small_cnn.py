"""A small CNN backbone for fast CPU runs, tests and the demo: 8x8 tokens at 112x112.

(B, H, W, 3) -> (B, ceil(H/8) - 6, ceil(W/8) - 6, features): three stride-2 stages of two
3x3 ConvBN each (to 14x14 at 112), then one 7x7 'VALID' ConvBN whose receptive field spans a
facial region, giving an 8x8 map at 112x112. Same ConvBN convention as the InceptionV3 trunk.
"""

import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from mlt_flax.models.inception_v3 import ConvBN

FINAL_KERNEL = 7  # the last 'VALID' conv: 14x14 -> 8x8 at 112x112
NUM_STAGES = 3  # stride-2 stages


def output_size(size: int) -> int:
  """Spatial size of the output for an input of `size` pixels (0 if too small)."""
  return max(math.ceil(size / 2**NUM_STAGES) - (FINAL_KERNEL - 1), 0)


MIN_SIZE = 2**NUM_STAGES * (FINAL_KERNEL - 1) + 1  # 49: the smallest input giving 1x1


class SmallCNN(nn.Module):
  """__call__(images (B, H, W, 3) in [-1, 1], train) -> (B, h, w, features)."""
  widths: Sequence[int] = (32, 64, 128)  # channels of the stride-2 stages
  features: int = 256  # output channels
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32
  fold_bn: bool = False  # every ConvBN in its folded inference form (models/fold.py)

  @nn.compact
  def __call__(self, x, train: bool = False):
    if len(self.widths) != NUM_STAGES:
      raise ValueError(f"SmallCNN.widths needs {NUM_STAGES} entries, got {self.widths}")
    if min(x.shape[1:3]) < MIN_SIZE:
      raise ValueError(f"SmallCNN needs inputs of at least {MIN_SIZE}x{MIN_SIZE}, "
                       f"got {x.shape[1]}x{x.shape[2]}")
    c = functools.partial(ConvBN, bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
                          bn_axis_name=self.bn_axis_name, dtype=self.dtype,
                          fold_bn=self.fold_bn)
    x = x.astype(self.dtype)
    for i, width in enumerate(self.widths):
      x = c(width, (3, 3), strides=2, name=f"stage{i}_down")(x, train)
      x = c(width, (3, 3), name=f"stage{i}_conv")(x, train)
    return c(self.features, (FINAL_KERNEL, FINAL_KERNEL), padding="VALID", name="tokens")(x, train)
