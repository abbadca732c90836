"""On-device preprocessing and training augmentation (docs/recipe.md, "Data and augmentation").

Pure JAX functions meant to run inside the jitted (and shard_mapped) train step: the host only
decodes JPEGs and ships uint8 frames at their native size (112x112 for Aff-Wild2), because
resizing on the host is the input pipeline's real cost (docs/performance.md, "Input pipeline"). Everything works
on a per-device batch and draws its randomness from the key it is given; under shard_map, fold
the device index into the key first so that devices draw different augmentations.

  preprocess(images, size)  uint8 (B, H, W, 3) -> float32 (B, size, size, 3) in [-1, 1]
  augment(rng, images, labels, cfg, size, allow_mixup)
      -> images float32 (B, size, size, 3) in [-1, 1], soft labels (B, L), mask (B, L)

What `augment` does, and how it keeps the recipe's order
(mixup -> flip -> brightness -> channel drop -> rotation -> zoom -> label smoothing):
  1. mixup, on [0, 1] frames at native size: lambda ~ Beta(alpha, alpha) per sample, partner
     drawn with replacement from the same batch, frames and labels mixed with the same lambda.
  2. brightness (+U(-delta, delta), clip to [0, 1]) and 3. channel drop (each channel zeroed
     with probability p), per sample, still at native size.
  4. ONE bilinear resampling per frame that composes flip -> rotation -> zoom (-> shift, off
     in the recipe: `translate`, for the plain-CNN reference) and the resize from native
     size to `size` (the recipe resizes first, then augments at `size`).
  5. label smoothing, on the labels only.
Moving the flip after brightness and channel drop changes nothing: both are spatially uniform
per sample, so they commute exactly with any pixel permutation. Brightness and channel drop
also commute with the bilinear warp (a convex combination of pixels, per channel) except for
two things: the clip to [0, 1] is applied before the interpolation instead of after it (the two
differ only where a pixel's neighbours straddle the clip), and border pixels come from the fill
mode of the already-adjusted frame. Doing them at native size costs ~7x fewer pixels at 299.

Geometry (`warp`): pixel centres sit at half-integers (the convention of jax.image.resize), the
rotation and zoom are about the frame centre, a positive angle turns the content
counter-clockwise as displayed (pi / 2 is np.rot90), and a zoom factor z > 1 magnifies the
content by z. Pixels that come from outside the frame follow `fill_mode`:
  'reflect' (default): the frame mirrored at its border (d c b a | a b c d | d c b a), the
      default of the Keras RandomRotation / RandomZoom layers that the recipe's parameters
      (+-0.1 turn, +-10%) come from, and free of artificial edges for the model to learn;
  'nearest': the border pixel repeated;
  'constant': black (0 in [0, 1] space, -1 in the model's [-1, 1] space).
It is read from cfg.fill_mode when the config has that field.

Every step whose parameter is 0 / False is skipped at trace time, so it is an exact no-op; with
every step off, `augment` returns preprocess(images, size) and the labels unchanged.
"""

import math

import jax
import jax.numpy as jnp
import ml_collections

MAX_PIXEL_VALUE = 255.0  # uint8 white
FLIP_PROB = 0.5  # docs/recipe.md: horizontal flip of half the frames
FILL_MODES = ("reflect", "nearest", "constant")
DEFAULT_FILL_MODE = "reflect"  # used when the augment config has no fill_mode field
TRANSLATE_KEY = 6  # the shift's key: fold_in(rng, 6), beside the 6 split keys of the others
CONSTANT_FILL_VALUE = 0.0  # 'constant' fill, in [0, 1] pixel space: black


def to_unit_range(images: jax.Array) -> jax.Array:
  """uint8 (..., 3) in [0, 255] -> float32 in [0, 1]."""
  return images.astype(jnp.float32) / MAX_PIXEL_VALUE


def unit_to_model_range(images: jax.Array) -> jax.Array:
  """float [0, 1] -> [-1, 1], the Inception input convention (x / 127.5 - 1 on uint8)."""
  return images * 2.0 - 1.0


def _resize(images: jax.Array, size: int) -> jax.Array:
  """Bilinear resize (B, H, W, C) -> (B, size, size, C), half-pixel centres, no antialias.

  No antialias, so that this is exactly the sampler `warp` uses with an identity transform:
  frames are upscaled in practice (112 -> 299), where antialias does nothing anyway.
  """
  b, h, w, c = images.shape
  if (h, w) == (size, size):
    return images
  return jax.image.resize(images, (b, size, size, c), method="linear", antialias=False)


def preprocess(images: jax.Array, size: int) -> jax.Array:
  """Eval / inference input: uint8 (B, H, W, 3) -> float32 (B, size, size, 3) in [-1, 1]."""
  return unit_to_model_range(_resize(to_unit_range(images), size))


# --------------------------------------------------------------------------------------------
# Geometry: flip, rotation, zoom and resize fused into one bilinear resampling.


def _reflect(coords: jax.Array, n: int) -> jax.Array:
  """Mirrors pixel coordinates into [-0.5, n - 0.5] (symmetric: the border pixel repeats)."""
  # In edge space (pixel i spans [i, i + 1)) the mirrored frame has period 2n.
  period = 2.0 * n
  edge = jnp.mod(coords + 0.5, period)
  edge = jnp.where(edge > n, period - edge, edge)
  return edge - 0.5


def bilinear_sample(images: jax.Array, y: jax.Array, x: jax.Array,
                    fill_mode: str = DEFAULT_FILL_MODE,
                    fill_value: float = CONSTANT_FILL_VALUE) -> jax.Array:
  """Samples images (B, H, W, C) at pixel coordinates y, x (B, h, w) -> (B, h, w, C).

  Coordinates are in input pixels with pixel centres at integers (the centre of the top-left
  pixel is (0, 0)). Outside the frame, values follow fill_mode (see the module docstring).
  """
  if fill_mode not in FILL_MODES:
    raise ValueError(f"fill_mode must be one of {FILL_MODES}, got {fill_mode!r}")
  b, h, w, c = images.shape
  out_shape = y.shape
  if fill_mode == "reflect":
    y, x = _reflect(y, h), _reflect(x, w)
  y0, x0 = jnp.floor(y), jnp.floor(x)
  wy, wx = y - y0, x - x0
  y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)
  flat = images.reshape(b, h * w, c)
  gather = jax.vmap(lambda im, idx: im[idx])  # per frame: (H*W, C)[(N,)] -> (N, C)

  out = jnp.zeros(out_shape + (c,), images.dtype)
  for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
    yi, xi = y0 + dy, x0 + dx
    weight = (wy if dy else 1.0 - wy) * (wx if dx else 1.0 - wx)
    # Clamping the indices is the 'nearest' fill, and keeps reflected coordinates (which can
    # sit half a pixel outside) on the border pixel.
    idx = jnp.clip(yi, 0, h - 1) * w + jnp.clip(xi, 0, w - 1)
    values = gather(flat, idx.reshape(b, -1)).reshape(out_shape + (c,))
    if fill_mode == "constant":
      inside = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
      values = jnp.where(inside[..., None], values, jnp.asarray(fill_value, images.dtype))
    out = out + weight[..., None] * values
  return out


def warp(images: jax.Array, flip: jax.Array, angle: jax.Array, scale: jax.Array, size: int,
         fill_mode: str = DEFAULT_FILL_MODE, shift: jax.Array | None = None) -> jax.Array:
  """Resize to size x size, then flip, rotate, zoom about the centre and shift, in ONE
  resampling.

  Args:
    images: (B, H, W, C) float frames (any range; interpolation is linear).
    flip: (B,) bool, mirror left-right first.
    angle: (B,) radians, then rotate the content counter-clockwise as displayed.
    scale: (B,) > 0, then magnify the content by this factor.
    size: output height = width.
    fill_mode: 'reflect', 'nearest' or 'constant' (black), for pixels from outside the frame.
    shift: (B, 2) output pixels (down, right), then move the content by this much; None: 0.
  Returns:
    (B, size, size, C) float32.
  """
  _, h, w, _ = images.shape
  centre = size / 2.0
  # Output pixel centres relative to the frame centre, in output pixels.
  grid = jnp.arange(size, dtype=jnp.float32) + 0.5 - centre
  yo, xo = grid[None, :, None], grid[None, None, :]
  if shift is not None:  # undo the shift first
    yo, xo = yo - shift[:, 0, None, None], xo - shift[:, 1, None, None]
  cos = jnp.cos(angle)[:, None, None]
  sin = jnp.sin(angle)[:, None, None]
  inv_scale = 1.0 / scale[:, None, None]
  # Inverse map, output -> source: undo the zoom, then the rotation, then the flip.
  xs = (xo * cos - yo * sin) * inv_scale
  ys = (xo * sin + yo * cos) * inv_scale
  xs = jnp.where(flip[:, None, None], -xs, xs)
  # Source position in the resized frame -> in the native frame (half-pixel resize).
  y_in = (ys + centre) * (h / size) - 0.5
  x_in = (xs + centre) * (w / size) - 0.5
  return bilinear_sample(images, y_in, x_in, fill_mode)


# --------------------------------------------------------------------------------------------
# Mixup and photometric steps, on [0, 1] frames.


def sample_mixup(rng: jax.Array, batch_size: int, alpha: float) -> tuple[jax.Array, jax.Array]:
  """Per-sample lambda ~ Beta(alpha, alpha) (B,) and partner indices (B,), with replacement."""
  lam_rng, partner_rng = jax.random.split(rng)
  lam = jax.random.beta(lam_rng, alpha, alpha, (batch_size,), dtype=jnp.float32)
  partner = jax.random.randint(partner_rng, (batch_size,), 0, batch_size)
  return lam, partner


def mix(images: jax.Array, labels: jax.Array, lam: jax.Array, partner: jax.Array
        ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Mixup with given lambdas and partners.

  Args:
    images: (B, H, W, C) float frames.
    labels: (B, L) in {0, 1}, or -1 where not annotated.
    lam: (B,) weight of each sample itself; 1 - lam goes to its partner.
    partner: (B,) int index of each sample's partner in the batch.
  Returns:
    images (B, H, W, C), soft labels (B, L), mask (B, L) float32.
  """
  partner_labels = labels[partner]
  # A -1 (not annotated) entry is not a probability: mixing it would fabricate a target. An
  # entry is valid only when both the sample and its partner annotate it; invalid entries are
  # masked out of the loss. (Partial-label datasets should not use mixup at all: docs/recipe.md.)
  mask = ((labels >= 0) & (partner_labels >= 0)).astype(jnp.float32)
  lam_l = lam[:, None]
  soft = lam_l * labels + (1.0 - lam_l) * partner_labels
  soft = jnp.where(mask > 0, soft, 0.0)
  lam_i = lam[:, None, None, None]
  mixed = lam_i * images + (1.0 - lam_i) * images[partner]
  return mixed, soft, mask


def adjust_brightness(rng: jax.Array, images: jax.Array, delta: float) -> jax.Array:
  """Adds U(-delta, delta) per sample to [0, 1] frames (B, H, W, C), then clips to [0, 1]."""
  shift = jax.random.uniform(rng, (images.shape[0], 1, 1, 1), minval=-delta, maxval=delta)
  return jnp.clip(images + shift, 0.0, 1.0)


def drop_channels(rng: jax.Array, images: jax.Array, prob: float) -> jax.Array:
  """Zeroes (blackens) each channel of each frame (B, H, W, C) independently with prob."""
  b, _, _, c = images.shape
  keep = jax.random.bernoulli(rng, 1.0 - prob, (b, 1, 1, c))
  return jnp.where(keep, images, 0.0)


def smooth_labels(labels: jax.Array, mask: jax.Array, smoothing: float) -> jax.Array:
  """y (1 - s) + s / 2 on valid entries; masked entries are set to 0 (any value would do)."""
  return jnp.where(mask > 0, labels * (1.0 - smoothing) + smoothing / 2.0, 0.0)


# --------------------------------------------------------------------------------------------
# The whole training augmentation.


def augment(rng: jax.Array, images: jax.Array, labels: jax.Array,
            cfg: ml_collections.ConfigDict, size: int, allow_mixup: bool
            ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The recipe's training augmentation, on device.

  Args:
    rng: a jax.random.key.
    images: (B, H, W, 3) uint8 frames at native size.
    labels: (B, L) float32 in {0, 1}, or -1 where not annotated.
    cfg: config.augment (mixup, mixup_alpha, hflip, brightness_delta, channel_drop_prob,
      rotation_max_turns, zoom, label_smoothing; optionally fill_mode, translate). Its values are Python
      constants: disabled steps are skipped at trace time.
    size: output height = width (the model's image_size).
    allow_mixup: a Python bool; False for partial-label (-1) datasets, where mixup is off.
  Returns:
    images (B, size, size, 3) float32 in [-1, 1], soft labels (B, L) float32 (0 where masked),
    mask (B, L) float32: 1 where the label is annotated, 0 where it is -1.
  """
  b = images.shape[0]
  # One key per step, whether or not the step is on, so that turning one step off does not
  # change what the others draw.
  (mixup_rng, flip_rng, brightness_rng, drop_rng,
   rotation_rng, zoom_rng) = jax.random.split(rng, 6)
  labels = labels.astype(jnp.float32)
  x = to_unit_range(images)

  if cfg.mixup and allow_mixup:
    lam, partner = sample_mixup(mixup_rng, b, cfg.mixup_alpha)
    x, labels, mask = mix(x, labels, lam, partner)
  else:
    mask = (labels >= 0).astype(jnp.float32)

  if cfg.brightness_delta:
    x = adjust_brightness(brightness_rng, x, cfg.brightness_delta)
  if cfg.channel_drop_prob:
    x = drop_channels(drop_rng, x, cfg.channel_drop_prob)

  translate = cfg.get("translate", 0.0)
  if cfg.hflip or cfg.rotation_max_turns or cfg.zoom or translate:
    flip = (jax.random.bernoulli(flip_rng, FLIP_PROB, (b,)) if cfg.hflip
            else jnp.zeros((b,), bool))
    max_angle = cfg.rotation_max_turns * 2.0 * math.pi
    angle = jax.random.uniform(rotation_rng, (b,), minval=-max_angle, maxval=max_angle)
    scale = jax.random.uniform(zoom_rng, (b,), minval=1.0 - cfg.zoom, maxval=1.0 + cfg.zoom)
    # Its own key, folded in: adding the step left the other steps' draws as they were.
    shift = jax.random.uniform(jax.random.fold_in(rng, TRANSLATE_KEY), (b, 2),
                               minval=-translate * size, maxval=translate * size
                               ) if translate else None
    x = warp(x, flip, angle, scale, size, cfg.get("fill_mode", DEFAULT_FILL_MODE), shift)
  else:
    x = _resize(x, size)

  if cfg.label_smoothing:
    labels = smooth_labels(labels, mask, cfg.label_smoothing)
  else:
    labels = jnp.where(mask > 0, labels, 0.0)
  return unit_to_model_range(x), labels, mask
