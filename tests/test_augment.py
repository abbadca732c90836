"""On-device augmentation: each step of docs/recipe.md ("Data and augmentation") as a checked property.

Order: mixup -> flip -> brightness -> channel drop -> rotation -> zoom -> label smoothing, with
the geometric steps and the resize fused into one bilinear resampling (`augment.warp`).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import abaw3
from mlt_flax import augment as aug

B, H, L = 8, 32, 12  # a small batch of 32x32 frames with 12 AUs


def _frames(seed=0, batch=B, size=H, low=0, high=256):
  return np.random.default_rng(seed).integers(low, high, (batch, size, size, 3), np.uint8)


def _labels(seed=0, batch=B):
  return np.random.default_rng(seed).integers(0, 2, (batch, L)).astype(np.float32)


def _cfg(**overrides):
  """config.augment of the paper's config with every step off, then `overrides`."""
  cfg = abaw3.get_config().augment
  cfg.mixup = False
  cfg.hflip = False
  cfg.brightness_delta = 0.0
  cfg.channel_drop_prob = 0.0
  cfg.rotation_max_turns = 0.0
  cfg.zoom = 0.0
  cfg.label_smoothing = 0.0
  cfg.update(overrides)
  return cfg


@functools.cache
def _paper_augment(size=48):
  """The paper's augmentation (mixup allowed), jitted once for the module."""
  return jax.jit(functools.partial(aug.augment, cfg=abaw3.get_config().augment, size=size,
                                   allow_mixup=True))


def _smooth(batch=B, size=H, channels=3):
  """Low-frequency frames, so that resampling twice stays close to resampling once."""
  yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
  phase = np.arange(batch * channels).reshape(batch, 1, 1, channels)
  f = 2 * np.pi / size
  return (0.5 + 0.25 * np.sin(f * yy[None, ..., None] + phase)
          * np.cos(f * xx[None, ..., None] - phase)).astype(np.float32)


def _interior(x, margin=6):
  return x[:, margin:-margin, margin:-margin]


_jit_warp = jax.jit(aug.warp, static_argnames=("size", "fill_mode"))


def _warp(images, flip=0.0, angle=0.0, scale=1.0, size=None, fill_mode="reflect"):
  """warp with the same explicit parameters for every frame."""
  b, h = images.shape[:2]
  full = lambda v: jnp.full((b,), v)
  return np.asarray(_jit_warp(jnp.asarray(images), full(flip) > 0, full(angle), full(scale),
                              size=size or h, fill_mode=fill_mode))


# ------------------------------------------------------------------------------- preprocess


def test_preprocess_scales_to_minus_one_one_at_native_size():
  frames = _frames()
  frames[0, 0, 0] = (0, 255, 128)
  out = np.asarray(aug.preprocess(frames, H))
  assert out.shape == (B, H, H, 3) and out.dtype == np.float32
  np.testing.assert_allclose(out, frames / 127.5 - 1.0, atol=1e-6)
  assert out.min() >= -1.0 and out.max() <= 1.0
  np.testing.assert_allclose(out[0, 0, 0], (-1.0, 1.0, 128 / 127.5 - 1.0), atol=1e-6)


@pytest.mark.parametrize("size", [48, 20])
def test_preprocess_resizes_bilinearly(size):
  frames = _frames()
  out = np.asarray(aug.preprocess(frames, size))
  assert out.shape == (B, size, size, 3)
  assert out.min() >= -1.0 and out.max() <= 1.0
  ref = jax.image.resize(frames / 127.5 - 1.0, (B, size, size, 3), "linear", antialias=False)
  np.testing.assert_allclose(out, ref, atol=1e-5)
  # A uniform frame stays uniform whatever the size.
  flat = np.full((1, H, H, 3), 200, np.uint8)
  np.testing.assert_allclose(aug.preprocess(flat, size), 200 / 127.5 - 1.0, atol=1e-6)


@pytest.mark.parametrize("size", [H, 48])
def test_all_steps_off_is_preprocess(size):
  frames, labels = _frames(), _labels()
  images, soft, mask = aug.augment(jax.random.key(0), frames, labels, _cfg(), size,
                                   allow_mixup=True)
  np.testing.assert_allclose(images, aug.preprocess(frames, size), atol=1e-5)
  np.testing.assert_array_equal(soft, labels)
  np.testing.assert_array_equal(mask, np.ones_like(labels))
  assert images.dtype == soft.dtype == mask.dtype == jnp.float32


# ------------------------------------------------------------------------------------- warp


def test_warp_identity_is_the_preprocess_resampler():
  x = _frames().astype(np.float32) / 255.0
  np.testing.assert_array_equal(_warp(x), x)  # scale 1 at native size: exact copy
  for size in (48, 20):
    np.testing.assert_allclose(_warp(x, size=size), aug._resize(jnp.asarray(x), size),
                               atol=1e-5)


def test_warp_flip_mirrors_columns():
  x = _frames().astype(np.float32)
  np.testing.assert_array_equal(_warp(x, flip=1.0), x[:, :, ::-1])


def test_warp_quarter_turn_is_rot90():
  # Positive angles turn the content counter-clockwise as displayed, as np.rot90 does.
  x = _frames().astype(np.float32) / 255.0
  out = _warp(x, angle=np.pi / 2)
  np.testing.assert_allclose(_interior(out, 1), _interior(np.rot90(x, 1, axes=(1, 2)), 1),
                             atol=1e-4)


def test_warp_zoom_magnifies_the_centre():
  # Zoom z = 2 shows the central half of the frame, upscaled 2x.
  x = _frames().astype(np.float32) / 255.0
  q = H // 4
  centre = jax.image.resize(x[:, q:-q, q:-q], x.shape, "linear", antialias=False)
  np.testing.assert_allclose(_interior(_warp(x, scale=2.0), 2), _interior(centre, 2),
                             atol=1e-5)


def test_warp_flip_then_rotation_is_one_resampling_of_both():
  x = _frames().astype(np.float32) / 255.0
  angle = 0.3
  fused = _warp(x, flip=1.0, angle=angle)
  sequential = _warp(_warp(x, flip=1.0), angle=angle)
  np.testing.assert_allclose(_interior(fused), _interior(sequential), atol=1e-5)
  # And the flip comes FIRST: rotating then flipping turns the other way.
  other_order = _warp(_warp(x, angle=angle), flip=1.0)
  assert np.abs(_interior(fused) - _interior(other_order)).max() > 0.1


def test_warp_rotation_then_zoom_is_one_resampling_of_both():
  x = _smooth()
  fused = _warp(x, angle=0.4, scale=1.1, size=48)
  sequential = _warp(_warp(x, angle=0.4, size=48), scale=1.1)
  # Two bilinear passes against one: equal up to interpolation error on a smooth frame.
  np.testing.assert_allclose(_interior(fused, 10), _interior(sequential, 10), atol=5e-3)


@pytest.mark.parametrize("fill_mode,pad_mode", [("reflect", "symmetric"),
                                                ("nearest", "edge"),
                                                ("constant", "constant")])
def test_warp_fill_modes_outside_the_frame(fill_mode, pad_mode):
  # Zoom 0.5 shows the frame padded by half its size on every side, at half resolution:
  # output pixel i samples half-way between padded pixels 2i and 2i + 1.
  x = _frames().astype(np.float32) / 255.0
  pad = H // 2
  padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode=pad_mode)
  expected = padded.reshape(B, H, 2, H, 2, 3).mean(axis=(2, 4))
  np.testing.assert_allclose(_warp(x, scale=0.5, fill_mode=fill_mode), expected, atol=1e-5)


def test_warp_refuses_unknown_fill_mode():
  with pytest.raises(ValueError, match="fill_mode"):
    _warp(np.zeros((1, 4, 4, 3), np.float32), fill_mode="wrap")


# ------------------------------------------------------------------------------ photometric


def test_brightness_adds_one_bounded_shift_per_frame_then_clips():
  delta = 0.1
  x = _frames(batch=64).astype(np.float32) / 255.0
  out = np.asarray(aug.adjust_brightness(jax.random.key(1), jnp.asarray(x), delta))
  assert out.min() >= 0.0 and out.max() <= 1.0
  assert np.abs(out - x).max() <= delta + 1e-6
  # Where nothing was clipped, one shift per frame, drawn from both signs.
  unclipped = (out > 0) & (out < 1)
  shifts = np.array([np.median((out - x)[i][unclipped[i]]) for i in range(len(x))])
  for i, s in enumerate(shifts):
    np.testing.assert_allclose((out - x)[i][unclipped[i]], s, atol=1e-6)
  assert (shifts < 0).any() and (shifts > 0).any()
  assert np.abs(shifts).max() <= delta


def test_brightness_in_augment_stays_within_delta():
  frames = _frames()
  images, _, _ = aug.augment(jax.random.key(2), frames, _labels(),
                             _cfg(brightness_delta=0.1), H, allow_mixup=False)
  # [-1, 1] is twice the [0, 1] scale.
  diff = np.abs(np.asarray(images) - np.asarray(aug.preprocess(frames, H))) / 2.0
  assert diff.max() <= 0.1 + 1e-6 and diff.max() > 0


def test_channel_drop_rate_and_dropped_channels_are_black():
  p, batch = 0.3, 1024
  frames = _frames(batch=batch, size=4, low=1)  # no black pixel in the input
  images, _, _ = aug.augment(jax.random.key(3), frames, _labels(batch=batch),
                             _cfg(channel_drop_prob=p), 4, allow_mixup=False)
  images = np.asarray(images)
  dropped = (images == -1.0).all(axis=(1, 2))  # (batch, 3): the whole channel is black
  # Binomial(3072, 0.3): std 0.008, so 0.04 is five sigmas.
  assert abs(dropped.mean() - p) < 0.04
  # Channels are dropped independently: all three patterns of one frame occur.
  assert len({tuple(d) for d in dropped}) == 2**3
  kept = np.broadcast_to(~dropped[:, None, None, :], images.shape)
  np.testing.assert_allclose(images[kept], np.asarray(aug.preprocess(frames, 4))[kept],
                             atol=1e-6)


# ------------------------------------------------------------------------------------ mixup


def test_mixup_mixes_frames_and_labels_with_the_same_lambda():
  # Frame i is uniform with channel values 255 * y_i: after mixup every output pixel must be
  # 255 * (lam y_i + (1 - lam) y_partner), the same mix as its soft labels.
  batch, num_labels = 16, 3
  rng = np.random.default_rng(4)
  codes = rng.integers(0, 256, (batch, num_labels)).astype(np.float32)
  frames = np.broadcast_to(codes[:, None, None, :], (batch, H, H, 3)).astype(np.uint8)
  labels = codes / 255.0
  images, soft, mask = aug.augment(jax.random.key(5), frames, labels, _cfg(mixup=True), H,
                                   allow_mixup=True)
  images, soft = np.asarray(images), np.asarray(soft)
  np.testing.assert_array_equal(mask, 1.0)
  np.testing.assert_allclose((images + 1.0) / 2.0, np.broadcast_to(
      soft[:, None, None, :], images.shape), atol=1e-5)
  # Each soft label is lam y_i + (1 - lam) y_p for some partner p and lam in [0, 1].
  mixed_some = False
  for i in range(batch):
    fits = []
    for p in range(batch):
      direction = labels[i] - labels[p]
      if not direction.any():
        continue
      lam = np.dot(soft[i] - labels[p], direction) / np.dot(direction, direction)
      residual = np.abs(lam * labels[i] + (1 - lam) * labels[p] - soft[i]).max()
      fits.append((residual, lam))
    residual, lam = min(fits)
    if residual > 1e-5:  # only the sample itself fits: lam = 1 or its partner is itself
      np.testing.assert_allclose(soft[i], labels[i], atol=1e-5)
    else:
      assert -1e-5 <= lam <= 1 + 1e-5
      mixed_some |= 1e-3 < lam < 1 - 1e-3
  assert mixed_some


def test_mixup_lambda_is_beta_u_shaped():
  # Beta(0.4, 0.4): density ~ (lam (1 - lam))^-0.6, mass piled up near 0 and 1.
  sample = jax.jit(aug.sample_mixup, static_argnums=(1, 2))
  lam, partner = sample(jax.random.key(6), 20000, 0.4)
  lam, partner = np.asarray(lam), np.asarray(partner)
  assert lam.min() >= 0.0 and lam.max() <= 1.0
  counts, _ = np.histogram(lam, bins=10, range=(0.0, 1.0))
  halves = (counts[:5] + counts[::-1][:5]) / 2.0  # symmetric: fold at 0.5
  assert (np.diff(halves) < 0).all()  # falling towards the middle
  assert halves[0] > 3 * halves[-1]
  assert abs(lam.mean() - 0.5) < 0.02
  # Partners drawn uniformly WITH replacement from the batch: a fraction 1 - (1 - 1/n)^n
  # ~ 1 - 1/e of the samples get picked as someone's partner.
  assert partner.min() >= 0 and partner.max() < len(partner)
  assert abs(len(np.unique(partner)) / len(partner) - (1 - np.exp(-1))) < 0.02


def test_no_mixup_when_not_allowed():
  frames, labels = _frames(), _labels()
  images, soft, mask = aug.augment(jax.random.key(7), frames, labels, _cfg(mixup=True), H,
                                   allow_mixup=False)
  np.testing.assert_array_equal(soft, labels)
  np.testing.assert_array_equal(mask, 1.0)
  np.testing.assert_allclose(images, aug.preprocess(frames, H), atol=1e-5)


def test_mix_never_mixes_an_unannotated_label():
  x = np.zeros((3, 2, 2, 3), np.float32)
  labels = np.array([[1.0, -1.0, 0.0],
                     [0.0, 1.0, -1.0],
                     [1.0, 1.0, 1.0]], np.float32)
  lam = jnp.array([0.25, 0.5, 0.75])
  partner = jnp.array([2, 0, 1])
  _, soft, mask = aug.mix(jnp.asarray(x), jnp.asarray(labels), lam, partner)
  # Valid only where both the sample and its partner annotate the AU.
  np.testing.assert_array_equal(mask, [[1, 0, 1], [1, 0, 0], [1, 1, 0]])
  np.testing.assert_allclose(soft, [[0.25 + 0.75, 0, 0.75],
                                    [0.5, 0, 0],
                                    [0.75, 1.0, 0]], atol=1e-6)


# ---------------------------------------------------------------------- label smoothing, all


def test_label_smoothing_and_unannotated_mask():
  labels = np.array([[1.0, 0.0, -1.0]] * B, np.float32)
  _, soft, mask = aug.augment(jax.random.key(8), _frames(), labels,
                              _cfg(label_smoothing=0.1), H, allow_mixup=False)
  # y (1 - s) + s / 2 with s = 0.1: 1 -> 0.95, 0 -> 0.05; -1 is masked out.
  np.testing.assert_allclose(soft[:, :2], np.array([[0.95, 0.05]] * B), atol=1e-6)
  np.testing.assert_array_equal(mask, np.array([[1.0, 1.0, 0.0]] * B))


def test_paper_config_is_deterministic_in_the_key():
  frames, labels = _frames(), _labels()
  run = lambda seed: jax.tree.map(np.asarray,
                                  _paper_augment()(jax.random.key(seed), frames, labels))
  first, again, other = run(0), run(0), run(1)
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(first[0], other[0])
  assert not np.array_equal(first[1], other[1])


def test_paper_config_under_jit():
  cfg = abaw3.get_config().augment
  frames, labels = _frames(), _labels()
  images, soft, mask = _paper_augment()(jax.random.key(9), frames, labels)
  eager = aug.augment(jax.random.key(9), frames, labels, cfg, 48, allow_mixup=True)
  for a, b in zip((images, soft, mask), eager):
    np.testing.assert_allclose(a, b, atol=1e-5)
  assert images.shape == (B, 48, 48, 3) and soft.shape == mask.shape == (B, L)
  assert images.dtype == soft.dtype == mask.dtype == jnp.float32
  assert images.min() >= -1.0 and images.max() <= 1.0
  s = cfg.label_smoothing
  assert soft.min() >= s / 2 - 1e-6 and soft.max() <= 1 - s / 2 + 1e-6
