"""The per-frame timeline of one video (``Script``): AU events, labels, pose, lighting, dropouts.

AUs come from expression events (smile = AU12 + often AU6/AU25, speech = AU25 + often AU26,
...) with onset/apex/offset envelopes of 5-40 frames, which gives realistic co-occurrence and
imbalance. Labels are ``intensity >= label_threshold``. Head pose, gaze, blinks and lighting
drift smoothly; face detections drop out in short runs; a few segments and single entries are
not annotated (-1).
"""

import dataclasses
import math

import numpy as np

from mlt_flax.data.synthetic.config import SyntheticConfig, uniform
from mlt_flax.data.synthetic.layout import AU_INDEX, AU_ORDER, NOT_ANNOTATED


@dataclasses.dataclass(frozen=True)
class Script:
  """Per-frame state of one video, T frames.

  Attributes:
    intensities: (T, 12) float32 AU intensities in [0, 1], ``AU_ORDER`` columns.
    labels: (T, 12) int8 in {-1, 0, 1}: ``intensities >= label_threshold``, -1 where not
      annotated.
    face_present: (T,) bool; False frames get no image file.
    rotation_deg, scale, tx, ty, yaw: (T,) float32 head pose (tx, ty in fractions of the side).
    blink: (T,) float32 upper-lid closure in [0, 1].
    gaze: (T, 2) float32 iris offset in eye half-widths.
    brightness: (T,) float32 lighting gain.
    extra_blur: (T,) bool, frames with motion blur.
  """
  intensities: np.ndarray
  labels: np.ndarray
  face_present: np.ndarray
  rotation_deg: np.ndarray
  scale: np.ndarray
  tx: np.ndarray
  ty: np.ndarray
  yaw: np.ndarray
  blink: np.ndarray
  gaze: np.ndarray
  brightness: np.ndarray
  extra_blur: np.ndarray


def _smooth_noise(rng: np.random.Generator, num_frames: int, sigma: float) -> np.ndarray:
  """(T,) a stationary gaussian process with unit std and a gaussian autocorrelation."""
  radius = int(math.ceil(3 * sigma))
  kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  kernel /= np.sqrt(np.sum(kernel ** 2))  # unit variance for unit white noise
  white = rng.standard_normal(num_frames + 2 * radius)
  return np.convolve(white, kernel, mode="valid").astype(np.float32)


def _envelope(num_frames: int, start: int, duration: int, apex: float, onset: int
              ) -> np.ndarray:
  """(T,) an event's intensity: smoothstep rise over `onset` frames, plateau, symmetric fall."""
  t = np.arange(num_frames, dtype=np.float32) - start
  rise = np.clip((t + 1) / max(onset, 1), 0.0, 1.0)
  fall = np.clip((duration - t) / max(onset, 1), 0.0, 1.0)
  ramp = np.minimum(rise, fall)
  return apex * ramp * ramp * (3 - 2 * ramp)


def _runs(rng: np.random.Generator, num_frames: int, rate: float, length: tuple[int, int]
          ) -> np.ndarray:
  """(T,) bool: Poisson(rate per 100 frames) runs of uniform length placed uniformly."""
  mask = np.zeros(num_frames, bool)
  for _ in range(rng.poisson(rate * num_frames / 100.0)):
    n = int(rng.integers(length[0], length[1] + 1))
    start = int(rng.integers(0, max(num_frames - n, 0) + 1))
    mask[start:start + n] = True
  return mask


def simulate_script(rng: np.random.Generator, num_frames: int,
                    config: SyntheticConfig = SyntheticConfig()) -> Script:
  """Samples the AU events, labels, pose, lighting and dropouts of one T-frame video."""
  ev, n = config.events, config.nuisance
  intensities = np.zeros((num_frames, len(AU_ORDER)), np.float32)
  for template in ev.templates:
    for _ in range(rng.poisson(template.rate * num_frames / 100.0)):
      duration = int(rng.integers(template.duration[0], template.duration[1] + 1))
      start = int(rng.integers(-duration // 2, num_frames))  # events may straddle the ends
      apex = uniform(rng, ev.apex)
      for au, prob in template.members:
        if rng.uniform() >= prob:
          continue
        d = max(2, int(round(duration * uniform(rng, ev.member_scale))))
        s = start + int(rng.integers(-ev.member_jitter, ev.member_jitter + 1))
        a = min(1.0, apex * uniform(rng, ev.member_scale))
        onset = max(1, int(round(d * uniform(rng, ev.onset_fraction))))
        k = AU_INDEX[au]
        intensities[:, k] = np.maximum(intensities[:, k], _envelope(num_frames, s, d, a, onset))

  labels = (intensities >= ev.label_threshold).astype(np.int8)
  if rng.uniform() < n.unannotated_segment_prob:  # one annotation gap: a run of -1 rows
    length = int(rng.integers(n.unannotated_length[0], n.unannotated_length[1] + 1))
    start = int(rng.integers(0, max(num_frames - length, 0) + 1))
    labels[start:start + length] = NOT_ANNOTATED
  labels[rng.uniform(size=labels.shape) < n.unannotated_entry_prob] = NOT_ANNOTATED
  face_present = ~_runs(rng, num_frames, n.missing_rate, n.missing_length)

  smooth = lambda: _smooth_noise(rng, num_frames, n.pose_smoothness)
  rotation = np.clip(rng.normal(0, n.rotation_deg_video) + n.rotation_deg_frame * smooth(),
                     -n.rotation_deg_max, n.rotation_deg_max)
  scale = np.exp(rng.normal(0, n.log_scale_video) + n.log_scale_frame * smooth())
  tx = rng.normal(0, n.translation_video) + n.translation_frame * smooth()
  ty = rng.normal(0, n.translation_video) + n.translation_frame * smooth()
  yaw = np.clip(rng.normal(0, n.yaw_video) + n.yaw_frame * smooth(), -1.0, 1.0)
  gaze = n.gaze * np.stack([smooth(), 0.5 * smooth()], axis=1)
  blink = np.zeros(num_frames, np.float32)
  for _ in range(rng.poisson(n.blink_rate * num_frames / 100.0)):
    start = int(rng.integers(0, num_frames))
    profile = np.asarray(n.blink_profile, np.float32)[:num_frames - start]
    blink[start:start + len(profile)] = np.maximum(blink[start:start + len(profile)], profile)
  brightness = uniform(rng, n.brightness_video) * (1.0 + n.brightness_frame * smooth())
  extra_blur = rng.uniform(size=num_frames) < n.motion_blur_prob
  f32 = lambda x: np.asarray(x, np.float32)
  return Script(
      intensities=intensities, labels=labels, face_present=face_present,
      rotation_deg=f32(rotation), scale=f32(scale), tx=f32(tx), ty=f32(ty), yaw=f32(yaw),
      blink=blink, gaze=f32(gaze), brightness=f32(brightness), extra_blur=extra_blur)
