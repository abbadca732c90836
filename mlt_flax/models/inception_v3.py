"""InceptionV3 trunk (Szegedy et al. 2016) in Flax linen: image -> feature map, no pooling.

(B, H, W, 3) in [-1, 1] -> (B, h, w, 2048); 8x8 at 299x299, any input from 75x75 up.
Every conv is Conv(no bias) -> BatchNorm(no scale, epsilon 1e-3) -> ReLU, as in the Keras and
TF-slim graphs. Two published variants differ only in the pool branch of the last block:
  'tf2015': Google's 2015 ImageNet graph (the FID network): max pool there.
  'keras':  keras.applications.InceptionV3: average pool there.
In both, the 3x3 'SAME' average pools exclude padding from the count (TF semantics).
Module names follow TF-slim (Conv2d_1a_3x3, Mixed_5b, ...) and torchvision (branch names).
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mlt_flax.models import pooling

VARIANTS = ("tf2015", "keras")
MIN_SIZE = 75  # smallest input whose stride-2 'VALID' stages all keep >= 1 pixel


def output_size(size: int) -> int:
  """Spatial size of the trunk's output for a square input of `size` pixels (0 if too small)."""
  s = (size - 3) // 2 + 1  # Conv2d_1a_3x3, stride 2
  s = s - 2  # Conv2d_2a_3x3
  s = (s - 3) // 2 + 1  # MaxPool 3x3/2
  s = s - 2  # Conv2d_4a_3x3
  s = (s - 3) // 2 + 1  # MaxPool 3x3/2
  s = (s - 3) // 2 + 1  # Mixed_6a
  s = (s - 3) // 2 + 1  # Mixed_7a
  return max(s, 0)


class ConvBN(nn.Module):
  """Conv (no bias) -> BatchNorm (no scale) -> ReLU.

  fold_bn=True is the inference form with the BatchNorm folded into the conv
  (mlt_flax/models/fold.py): Conv (with bias) -> ReLU, parameters conv/{kernel, bias}.
  """
  features: int
  kernel: tuple[int, int]
  strides: int = 1
  padding: str = "SAME"
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32
  fold_bn: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    if self.fold_bn and train:
      raise ValueError("ConvBN(fold_bn=True) is for inference: it has no BatchNorm to train")
    x = nn.Conv(self.features, self.kernel, (self.strides, self.strides), self.padding,
                use_bias=self.fold_bn, dtype=self.dtype, name="conv")(x)
    if self.fold_bn:
      return nn.relu(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                     epsilon=self.bn_epsilon, use_scale=False, axis_name=self.bn_axis_name,
                     dtype=self.dtype, name="bn")(x)
    return nn.relu(x)


# Pool arguments by keyword: jax2onnx's ONNX export (mlt_flax/export.py) replaces the linen
# pools with functions that take window_shape, strides and padding as keywords only.
def _avg_pool_3x3(x):
  return nn.avg_pool(x, window_shape=(3, 3), strides=(1, 1), padding="SAME",
                     count_include_pad=False)


# In training, max pools are models/pooling.max_pool: the same values and gradient, without
# XLA:CPU's slow select-and-scatter. Inference keeps the linen pool (one ONNX MaxPool).
def _max_pool_3x3(x, train: bool):
  if train:
    return pooling.max_pool(x, 3, 1, "SAME")
  return nn.max_pool(x, window_shape=(3, 3), strides=(1, 1), padding="SAME")


def _max_pool_3x3_s2(x, train: bool):
  if train:
    return pooling.max_pool(x, 3, 2, "VALID")
  return nn.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding="VALID")


class InceptionA(nn.Module):  # Mixed_5b..5d at 35x35
  pool_features: int
  conv: Any

  @nn.compact
  def __call__(self, x, train):
    c = self.conv
    b1 = c(64, (1, 1), name="branch1x1")(x, train)
    b5 = c(48, (1, 1), name="branch5x5_1")(x, train)
    b5 = c(64, (5, 5), name="branch5x5_2")(b5, train)
    b3 = c(64, (1, 1), name="branch3x3dbl_1")(x, train)
    b3 = c(96, (3, 3), name="branch3x3dbl_2")(b3, train)
    b3 = c(96, (3, 3), name="branch3x3dbl_3")(b3, train)
    bp = c(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_3x3(x), train)
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):  # Mixed_6a: 35x35 -> 17x17
  conv: Any

  @nn.compact
  def __call__(self, x, train):
    c = self.conv
    b3 = c(384, (3, 3), strides=2, padding="VALID", name="branch3x3")(x, train)
    bd = c(64, (1, 1), name="branch3x3dbl_1")(x, train)
    bd = c(96, (3, 3), name="branch3x3dbl_2")(bd, train)
    bd = c(96, (3, 3), strides=2, padding="VALID", name="branch3x3dbl_3")(bd, train)
    return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x, train)], axis=-1)


class InceptionC(nn.Module):  # Mixed_6b..6e at 17x17
  channels_7x7: int
  conv: Any

  @nn.compact
  def __call__(self, x, train):
    c, c7 = self.conv, self.channels_7x7
    b1 = c(192, (1, 1), name="branch1x1")(x, train)
    b7 = c(c7, (1, 1), name="branch7x7_1")(x, train)
    b7 = c(c7, (1, 7), name="branch7x7_2")(b7, train)
    b7 = c(192, (7, 1), name="branch7x7_3")(b7, train)
    bd = c(c7, (1, 1), name="branch7x7dbl_1")(x, train)
    bd = c(c7, (7, 1), name="branch7x7dbl_2")(bd, train)
    bd = c(c7, (1, 7), name="branch7x7dbl_3")(bd, train)
    bd = c(c7, (7, 1), name="branch7x7dbl_4")(bd, train)
    bd = c(192, (1, 7), name="branch7x7dbl_5")(bd, train)
    bp = c(192, (1, 1), name="branch_pool")(_avg_pool_3x3(x), train)
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):  # Mixed_7a: 17x17 -> 8x8
  conv: Any

  @nn.compact
  def __call__(self, x, train):
    c = self.conv
    b3 = c(192, (1, 1), name="branch3x3_1")(x, train)
    b3 = c(320, (3, 3), strides=2, padding="VALID", name="branch3x3_2")(b3, train)
    b7 = c(192, (1, 1), name="branch7x7x3_1")(x, train)
    b7 = c(192, (1, 7), name="branch7x7x3_2")(b7, train)
    b7 = c(192, (7, 1), name="branch7x7x3_3")(b7, train)
    b7 = c(192, (3, 3), strides=2, padding="VALID", name="branch7x7x3_4")(b7, train)
    return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x, train)], axis=-1)


class InceptionE(nn.Module):  # Mixed_7b, 7c at 8x8
  conv: Any
  max_pool_branch: bool  # the 2015 graph's Mixed_7c pools with max, not average

  @nn.compact
  def __call__(self, x, train):
    c = self.conv
    b1 = c(320, (1, 1), name="branch1x1")(x, train)
    b3 = c(384, (1, 1), name="branch3x3_1")(x, train)
    b3a = c(384, (1, 3), name="branch3x3_2a")(b3, train)
    b3b = c(384, (3, 1), name="branch3x3_2b")(b3, train)
    bd = c(448, (1, 1), name="branch3x3dbl_1")(x, train)
    bd = c(384, (3, 3), name="branch3x3dbl_2")(bd, train)
    bda = c(384, (1, 3), name="branch3x3dbl_3a")(bd, train)
    bdb = c(384, (3, 1), name="branch3x3dbl_3b")(bd, train)
    pooled = _max_pool_3x3(x, train) if self.max_pool_branch else _avg_pool_3x3(x)
    bp = c(192, (1, 1), name="branch_pool")(pooled, train)
    return jnp.concatenate([b1, b3a, b3b, bda, bdb, bp], axis=-1)


class InceptionV3(nn.Module):
  """The trunk. __call__(images (B, H, W, 3) in [-1, 1], train) -> (B, h, w, 2048)."""
  variant: str = "tf2015"
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  bn_axis_name: str | None = None  # set to the data axis to average batch stats over devices
  dtype: Any = jnp.float32
  fold_bn: bool = False  # every ConvBN in its folded inference form (models/fold.py)

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.variant not in VARIANTS:
      raise ValueError(f"InceptionV3.variant must be one of {VARIANTS}, got {self.variant!r}")
    if min(x.shape[1:3]) < MIN_SIZE:
      raise ValueError(f"InceptionV3 needs inputs of at least {MIN_SIZE}x{MIN_SIZE}, "
                       f"got {x.shape[1]}x{x.shape[2]}")
    c = functools.partial(ConvBN, bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
                          bn_axis_name=self.bn_axis_name, dtype=self.dtype,
                          fold_bn=self.fold_bn)
    x = x.astype(self.dtype)
    x = c(32, (3, 3), strides=2, padding="VALID", name="Conv2d_1a_3x3")(x, train)
    x = c(32, (3, 3), padding="VALID", name="Conv2d_2a_3x3")(x, train)
    x = c(64, (3, 3), name="Conv2d_2b_3x3")(x, train)
    x = _max_pool_3x3_s2(x, train)
    x = c(80, (1, 1), padding="VALID", name="Conv2d_3b_1x1")(x, train)
    x = c(192, (3, 3), padding="VALID", name="Conv2d_4a_3x3")(x, train)
    x = _max_pool_3x3_s2(x, train)
    x = InceptionA(32, c, name="Mixed_5b")(x, train)
    x = InceptionA(64, c, name="Mixed_5c")(x, train)
    x = InceptionA(64, c, name="Mixed_5d")(x, train)
    x = InceptionB(c, name="Mixed_6a")(x, train)
    x = InceptionC(128, c, name="Mixed_6b")(x, train)
    x = InceptionC(160, c, name="Mixed_6c")(x, train)
    x = InceptionC(160, c, name="Mixed_6d")(x, train)
    x = InceptionC(192, c, name="Mixed_6e")(x, train)
    x = InceptionD(c, name="Mixed_7a")(x, train)
    x = InceptionE(c, max_pool_branch=False, name="Mixed_7b")(x, train)
    x = InceptionE(c, max_pool_branch=self.variant == "tf2015", name="Mixed_7c")(x, train)
    return x
