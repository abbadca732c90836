"""Synthetic facial Action Unit videos in the Aff-Wild2 (ABAW3 AU track) on-disk layout.

The project's embedded default dataset: procedurally drawn cartoon faces whose 12 Aff-Wild2 AUs
are local, anatomically placed changes (brows, lids, cheeks, lips, jaw), written exactly as the
real challenge data so the Aff-Wild2 TFDS builder reads it unchanged::

  <out_dir>/cropped_aligned/<video>/<frame:05d>.jpg         112x112 RGB JPEG, 1-based numbers;
                                                            faceless frames are absent
  <out_dir>/AU_Detection_Challenge/Train_Set/<video>.txt    header AU1,AU2,...,AU26, then one
  <out_dir>/AU_Detection_Challenge/Validation_Set/<video>.txt   line per frame: 0, 1 or -1
  <out_dir>/generator.json                                  seed, parameters and a summary

Two-person videos are written as two videos, ``<id>_left`` and ``<id>_right``.

How a video is made (every number lives in ``SyntheticConfig``):

* ``sample_identity``: one person and scene -- face shape, feature sizes and positions, skin,
  hair, background -- plus neutral-face quirks (slanted brows, down-turned mouth corners) that
  mimic AUs across identities, so only *change* on a face is a reliable cue.
* ``simulate_script``: the per-frame timeline. AUs come from expression events (smile = AU12 +
  often AU6/AU25, speech = AU25 + often AU26, ...) with onset/apex/offset envelopes of 5-40
  frames, which gives realistic co-occurrence and imbalance. Labels are
  ``intensity >= label_threshold``. Head pose, gaze, blinks and lighting drift smoothly; face
  detections drop out in short runs; a few segments and single entries are not annotated (-1).
* ``render_face`` (pure): the canonical, upright, noiseless face for given AU intensities;
  ``render_frame`` adds pose (rotation, scale, translation, yaw-like feature shift) over the
  scene background, lighting, blur and sensor noise; frames are stored as JPEG.

Everything is drawn from ``np.random.default_rng((seed, split, video, person))``, so the same
seed gives byte-identical label files and identical images.

Usage:  python -m mlt_flax.data.synthetic --out_dir=data/synthetic --seed=0
"""

import argparse
import concurrent.futures
import dataclasses
import json
import math
import os
import pathlib
import shutil
import sys
import time
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from mlt_flax import aus

# The AU order of every label row (the Aff-Wild2 challenge header).
AU_ORDER = aus.AFFWILD2
_AU_INDEX = {au: i for i, au in enumerate(AU_ORDER)}

# The Aff-Wild2 layout (see RECIPE.md, "Dataset layouts").
IMAGES_DIR = "cropped_aligned"
LABELS_DIR = "AU_Detection_Challenge"
SPLIT_DIRS = {"train": "Train_Set", "validation": "Validation_Set"}
FRAME_NAME = "{:05d}.jpg"
FIRST_FRAME = 1
NOT_ANNOTATED = -1
PAIR_SUFFIXES = ("_left", "_right")
# Written last, so its presence means "this folder holds a complete generation".
PARAMS_FILENAME = "generator.json"
# Bumped whenever the renderer or the script sampler changes what a seed produces.
GENERATOR_VERSION = 1

# cv2 drawing takes integer points; 4 fractional bits give 1/16-pixel precision.
_SHIFT = 4
_SUBPIXEL = 1 << _SHIFT

Range = tuple[float, float]
Color = tuple[float, float, float]


# ---------------------------------------------------------------------------------------------
# Configuration: every number of the generator, in one place.
# Lengths are fractions of the image side (so they hold at any image_size); y grows downwards.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FaceStyle:
  """Ranges the per-person identity is drawn from (uniform in [lo, hi])."""
  face_center_x: Range = (0.47, 0.53)  # centre of the face oval
  face_center_y: Range = (0.52, 0.56)
  face_half_width: Range = (0.29, 0.35)
  face_half_height: Range = (0.40, 0.44)
  eye_y: Range = (0.41, 0.45)  # eye centres
  eye_dx: Range = (0.15, 0.18)  # half the distance between the eye centres
  eye_half_width: Range = (0.065, 0.082)
  eye_half_height: Range = (0.034, 0.044)
  eye_tilt: Range = (-0.004, 0.010)  # outer corner above inner corner
  iris_ratio: Range = (0.85, 1.0)  # iris radius / eye half-height
  pupil_ratio: float = 0.45  # pupil radius / iris radius
  brow_gap: Range = (0.075, 0.095)  # eye centre to brow centre line
  brow_thickness: Range = (0.020, 0.030)
  brow_arch: Range = (0.008, 0.020)
  # Neutral slant of the inner brow ends: some people look "AU1" or "AU4" at rest.
  brow_inner_dy: Range = (-0.008, 0.008)
  nose_y: Range = (0.60, 0.64)  # nostrils
  nose_half_width: Range = (0.040, 0.056)
  mouth_y: Range = (0.745, 0.78)  # lip line at the centre
  mouth_half_width: Range = (0.090, 0.118)
  upper_lip: Range = (0.016, 0.026)  # vermilion thickness at the centre
  lower_lip: Range = (0.022, 0.034)
  # Neutral corner height (>0 up): some people look "AU12" or "AU15" at rest.
  mouth_curve: Range = (-0.008, 0.008)
  cheek_dx: Range = (0.16, 0.20)
  cheek_below_eye: Range = (0.11, 0.14)
  cheek_sigma: Range = (0.035, 0.05)
  cheek_alpha: Range = (0.12, 0.30)
  hair_prob: float = 0.9
  hairline_y: Range = (0.09, 0.16)
  hair_side_drop: Range = (0.12, 0.25)  # how far the hairline falls at the temples
  ear_y_below_eye: float = 0.06
  ear_half_size: tuple[float, float] = (0.035, 0.065)
  neck_half_width: float = 0.55  # of the face half-width
  skin_light: Color = (236.0, 204.0, 178.0)
  skin_dark: Color = (118.0, 78.0, 56.0)
  skin_jitter: float = 10.0  # per-channel std of the skin colour
  lip_red: Color = (176.0, 62.0, 72.0)
  lip_tint: Range = (0.5, 0.75)  # lip colour = mix(skin, lip_red, tint)
  brow_dark: Color = (28.0, 20.0, 14.0)
  brow_tint: Range = (0.5, 0.8)  # brow colour = mix(hair, brow_dark, tint)
  hair_colors: tuple[Color, ...] = (
      (25.0, 20.0, 18.0), (60.0, 40.0, 28.0), (110.0, 75.0, 45.0), (170.0, 130.0, 80.0),
      (140.0, 60.0, 30.0), (150.0, 150.0, 150.0))
  iris_colors: tuple[Color, ...] = (
      (70.0, 45.0, 25.0), (40.0, 30.0, 20.0), (60.0, 100.0, 140.0), (80.0, 110.0, 70.0))
  sclera: Color = (238.0, 236.0, 230.0)
  mouth_inside: Color = (70.0, 22.0, 28.0)
  teeth: Color = (236.0, 232.0, 218.0)
  teeth_height: float = 0.02
  shirt_prob_dark: float = 0.5
  shirt_dark: Range = (20.0, 90.0)  # per-channel range of a dark shirt ...
  shirt_light: Range = (120.0, 240.0)  # ... and of a light one
  background_range: Range = (30.0, 230.0)  # per-channel range of the two gradient colours
  clutter_extent: Range = (-0.1, 1.1)  # clutter rectangles may run off the image
  line_width: float = 0.009  # wrinkles, folds, lid lines
  lash_width: float = 0.012  # upper lash line
  crease_darkness: float = 0.6  # wrinkle colour = mix(skin, black, darkness * intensity)
  background_blobs: int = 3  # blurred rectangles of scene clutter


@dataclasses.dataclass(frozen=True)
class AuEffects:
  """How far each AU moves or marks the face at intensity 1 (fractions of the image side)."""
  inner_brow_raise: float = 0.060  # AU1: inner brow ends up (+ central forehead wrinkles)
  outer_brow_raise: float = 0.060  # AU2: outer brow ends up (+ lateral forehead wrinkles)
  brow_lower: float = 0.028  # AU4: whole brow down ...
  brow_inner_lower: float = 0.025  # ... inner ends further down ...
  brow_knit: float = 0.024  # ... and pulled together (+ vertical glabella lines)
  cheek_raise: float = 0.050  # AU6: cheeks up (+ crow's feet, infraorbital furrow)
  cheek_flush: float = 0.30  # AU6: extra cheek colour
  lower_lid_raise_6: float = 0.30  # AU6 pushes the lower lid up a little (fraction of aperture)
  lower_lid_raise_7: float = 0.80  # AU7: lower lid up (fraction of the lower aperture)
  upper_lid_lower_7: float = 0.20  # AU7: upper lid down a little
  upper_lip_raise: float = 0.030  # AU10: upper lip centre up (+ nasolabial folds)
  nostril_flare: float = 0.40  # AU10: nostrils widen by this fraction
  corner_raise: float = 0.060  # AU12: lip corners up ...
  corner_widen: float = 0.025  # ... and out (+ dimple lines)
  corner_lower: float = 0.055  # AU15: lip corners down (+ marionette lines)
  mouth_narrow: float = 0.30  # AU23: mouth width shrinks by this fraction ...
  lip_thin_23: float = 0.40  # ... lips thin, darken and wrinkle
  lip_darken_23: float = 0.6
  lip_thin_24: float = 0.80  # AU24: lips pressed thin (+ chin bulge, mentolabial crease)
  chin_bulge: float = 0.6
  lips_part: float = 0.040  # AU25: opening between the lips
  jaw_drop: float = 0.065  # AU26: lower lip and chin down (opening grows if lips part)
  jaw_opens_lips: float = 0.4  # fraction of the jaw drop that opens closed lips
  # Where the marks that come with the AUs sit (wrinkles, folds, creases).
  forehead_wrinkle_offset: float = 0.045  # AU1/AU2: first wrinkle above the raised brow
  forehead_wrinkle_gap: float = 0.022  # spacing between forehead wrinkles
  glabella_length: float = 0.055  # AU4: vertical lines between the brows
  glabella_dx: float = 0.018  # their distance from the midline
  crows_feet_length: float = 0.045  # AU6
  crows_feet_spread: float = 0.45  # radians between the crow's-feet lines
  lid_fold_offset: float = 0.018  # AU7: the fold under the tensed lower lid
  chin_bulge_offset: float = 0.055  # AU24: bulge centre below the lower lip ...
  chin_bulge_sigma: float = 0.035  # ... and its size
  mentolabial_offset: float = 0.014  # AU24: the crease under the lower lip
  marionette_length: float = 0.055  # AU15: lines down from the mouth corners
  dimple_height: float = 0.02  # AU12: half-height of the dimple arcs


@dataclasses.dataclass(frozen=True)
class ExpressionTemplate:
  """One kind of event: its rate, duration and the AUs it carries (with probabilities)."""
  name: str
  rate: float  # events per 100 frames
  duration: tuple[int, int]  # frames, inclusive
  members: tuple[tuple[int, float], ...]  # (AU, probability of joining the event)


@dataclasses.dataclass(frozen=True)
class EventModel:
  """The AU timeline: expression events with onset / apex / offset envelopes."""
  templates: tuple[ExpressionTemplate, ...] = (
      ExpressionTemplate("smile", 0.95, (12, 40), ((12, 1.0), (6, 0.75), (25, 0.4), (7, 0.2))),
      ExpressionTemplate("speech", 1.6, (5, 20), ((25, 1.0), (26, 0.45))),
      ExpressionTemplate("surprise", 0.45, (8, 30), ((1, 0.9), (2, 0.9), (25, 0.5), (26, 0.4))),
      ExpressionTemplate("frown", 0.5, (10, 40), ((4, 1.0), (7, 0.7), (23, 0.1))),
      ExpressionTemplate("disgust", 0.6, (8, 30), ((10, 1.0), (4, 0.4), (7, 0.3), (25, 0.3))),
      ExpressionTemplate("squint", 0.35, (8, 30), ((7, 1.0), (6, 0.2))),
      ExpressionTemplate("sad", 0.3, (10, 35), ((15, 1.0), (1, 0.6), (4, 0.4))),
      ExpressionTemplate("press", 0.4, (6, 25), ((24, 1.0), (23, 0.6))),
      ExpressionTemplate("tighten", 0.2, (6, 20), ((23, 1.0),)),
      ExpressionTemplate("inner_brow", 0.15, (6, 20), ((1, 1.0),)),
      ExpressionTemplate("outer_brow", 0.1, (6, 20), ((2, 1.0),)),
  )
  apex: Range = (0.6, 1.0)  # peak intensity of an event
  onset_fraction: Range = (0.1, 0.25)  # of the duration, rising; the same again falling
  member_jitter: int = 2  # frames each member AU's onset may lead or lag the event
  member_scale: Range = (0.85, 1.15)  # member duration and apex relative to the event's
  label_threshold: float = 0.35  # label = 1 where intensity >= this


@dataclasses.dataclass(frozen=True)
class Nuisance:
  """Everything that changes pixels but not labels."""
  # Head pose: per-video offset + smooth per-frame drift (std of a unit smooth process).
  rotation_deg_video: float = 4.0
  rotation_deg_frame: float = 5.0
  rotation_deg_max: float = 15.0
  log_scale_video: float = 0.05
  log_scale_frame: float = 0.03
  translation_video: float = 0.025
  translation_frame: float = 0.015
  yaw_video: float = 0.3  # yaw in [-1, 1]
  yaw_frame: float = 0.35
  yaw_shift: float = 0.035  # inner features slide this far at full yaw ...
  yaw_nose: float = 0.02  # ... the nose tip a bit further ...
  yaw_oval: float = 0.3  # ... the face oval only this fraction of yaw_shift
  yaw_squash: float = 0.15  # the far eye narrows by this fraction at full yaw
  pose_smoothness: float = 12.0  # frames: std of the gaussian that smooths the drift
  gaze: float = 0.25  # iris offset std, of the eye half-width
  blink_rate: float = 1.0  # per 100 frames
  blink_profile: tuple[float, ...] = (0.5, 1.0, 0.5)  # upper-lid closure over a blink
  # Lighting: gain = brightness * (1 + ramp * (position . direction)), then a colour tint.
  brightness_video: Range = (0.7, 1.25)
  brightness_frame: float = 0.05
  ramp: Range = (0.0, 0.6)
  tint: float = 0.06  # per-channel std of the colour cast
  # Camera.
  blur_sigma: Range = (0.0, 0.9)  # pixels at image_size
  motion_blur_prob: float = 0.04  # per frame: an extra blur ...
  motion_blur_sigma: float = 1.0  # ... of this many pixels
  noise_std: Range = (1.0, 6.0)  # grey levels
  jpeg_quality: tuple[int, int] = (65, 95)
  # Face detector dropouts: runs of frames with no image (labels still written).
  missing_rate: float = 0.5  # runs per 100 frames
  missing_length: tuple[int, int] = (1, 8)
  # Annotation gaps: a whole run of -1 rows, and isolated -1 entries.
  unannotated_segment_prob: float = 0.35  # per video
  unannotated_length: tuple[int, int] = (5, 25)
  unannotated_entry_prob: float = 0.002


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """All parameters of a synthetic Aff-Wild2-layout dataset (with the seed, its identity)."""
  num_train_videos: int = 24  # videos in Train_Set (a two-person pair counts as two)
  num_val_videos: int = 8  # videos in Validation_Set
  frames_per_video: int = 200  # mean video length
  frames_jitter: float = 0.25  # lengths are uniform in frames_per_video * (1 +- jitter)
  pair_fraction: float = 0.25  # fraction of each split's videos that are _left/_right pairs
  image_size: int = 112  # side of the stored square crops
  supersample: int = 2  # faces are drawn this many times larger, then area-downsampled
  video_prefix: str = "synth"
  face: FaceStyle = FaceStyle()
  effects: AuEffects = AuEffects()
  events: EventModel = EventModel()
  nuisance: Nuisance = Nuisance()


# ---------------------------------------------------------------------------------------------
# Identity, camera and the per-frame script.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Identity:
  """One person in one scene; lengths in fractions of the image side, colours RGB 0-255."""
  face_cx: float
  face_cy: float
  face_rx: float
  face_ry: float
  eye_y: float
  eye_dx: float
  eye_w: float
  eye_h: float
  eye_tilt: float
  iris_r: float
  brow_gap: float
  brow_thickness: float
  brow_arch: float
  brow_inner_dy: float
  nose_y: float
  nose_w: float
  mouth_y: float
  mouth_w: float
  upper_lip: float
  lower_lip: float
  mouth_curve: float
  cheek_dx: float
  cheek_y: float
  cheek_sigma: float
  cheek_alpha: float
  has_hair: bool
  hairline_y: float
  hair_side_drop: float
  skin: Color
  hair: Color
  brow: Color
  lip: Color
  iris: Color
  shirt: Color
  background: Color
  background2: Color
  # Scene clutter: (x0, y0, x1, y1, r, g, b) rectangles, blurred.
  clutter: tuple[tuple[float, ...], ...]


@dataclasses.dataclass(frozen=True)
class Camera:
  """Per-video capture settings."""
  blur_sigma: float  # pixels at image_size
  noise_std: float  # grey levels
  jpeg_quality: int
  tint: Color  # multiplicative colour cast
  ramp: float  # lighting gradient amplitude
  ramp_angle: float  # radians


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


def _uniform(rng: np.random.Generator, r: Range) -> float:
  return float(rng.uniform(r[0], r[1]))


def _mix(a: Sequence[float], b: Sequence[float], t: float) -> Color:
  """Linear colour interpolation a -> b, t in [0, 1]."""
  return tuple(float(x + (y - x) * t) for x, y in zip(a, b))


def sample_identity(rng: np.random.Generator, config: SyntheticConfig = SyntheticConfig()
                    ) -> Identity:
  """Draws one person (face geometry, colours) and their scene background."""
  f = config.face
  u = lambda r: _uniform(rng, r)
  skin = np.asarray(_mix(f.skin_light, f.skin_dark, rng.uniform()))
  skin = tuple(np.clip(skin + rng.normal(0.0, f.skin_jitter, 3), 0, 255).tolist())
  hair = f.hair_colors[rng.integers(len(f.hair_colors))]
  shirt_range = f.shirt_dark if rng.uniform() < f.shirt_prob_dark else f.shirt_light
  shirt = tuple(rng.uniform(*shirt_range, 3).tolist())
  eye_y = u(f.eye_y)
  eye_h = u(f.eye_half_height)
  clutter = []
  for _ in range(f.background_blobs):
    (x0, x1), (y0, y1) = np.sort(rng.uniform(*f.clutter_extent, (2, 2)), axis=1).tolist()
    clutter.append((x0, y0, x1, y1, *rng.uniform(*f.background_range, 3).tolist()))
  return Identity(
      face_cx=u(f.face_center_x), face_cy=u(f.face_center_y),
      face_rx=u(f.face_half_width), face_ry=u(f.face_half_height),
      eye_y=eye_y, eye_dx=u(f.eye_dx), eye_w=u(f.eye_half_width), eye_h=eye_h,
      eye_tilt=u(f.eye_tilt), iris_r=eye_h * u(f.iris_ratio),
      brow_gap=u(f.brow_gap), brow_thickness=u(f.brow_thickness), brow_arch=u(f.brow_arch),
      brow_inner_dy=u(f.brow_inner_dy),
      nose_y=u(f.nose_y), nose_w=u(f.nose_half_width),
      mouth_y=u(f.mouth_y), mouth_w=u(f.mouth_half_width),
      upper_lip=u(f.upper_lip), lower_lip=u(f.lower_lip), mouth_curve=u(f.mouth_curve),
      cheek_dx=u(f.cheek_dx), cheek_y=eye_y + u(f.cheek_below_eye),
      cheek_sigma=u(f.cheek_sigma), cheek_alpha=u(f.cheek_alpha),
      has_hair=bool(rng.uniform() < f.hair_prob), hairline_y=u(f.hairline_y),
      hair_side_drop=u(f.hair_side_drop),
      skin=skin, hair=hair, brow=_mix(hair, f.brow_dark, u(f.brow_tint)),
      lip=_mix(skin, f.lip_red, u(f.lip_tint)),
      iris=f.iris_colors[rng.integers(len(f.iris_colors))], shirt=shirt,
      background=tuple(rng.uniform(*f.background_range, 3).tolist()),
      background2=tuple(rng.uniform(*f.background_range, 3).tolist()),
      clutter=tuple(clutter))


def sample_camera(rng: np.random.Generator, config: SyntheticConfig = SyntheticConfig()
                  ) -> Camera:
  """Draws one video's capture settings."""
  n = config.nuisance
  return Camera(
      blur_sigma=_uniform(rng, n.blur_sigma), noise_std=_uniform(rng, n.noise_std),
      jpeg_quality=int(rng.integers(n.jpeg_quality[0], n.jpeg_quality[1] + 1)),
      tint=tuple((1.0 + rng.normal(0.0, n.tint, 3)).tolist()),
      ramp=_uniform(rng, n.ramp), ramp_angle=float(rng.uniform(0, 2 * math.pi)))


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
      apex = _uniform(rng, ev.apex)
      for au, prob in template.members:
        if rng.uniform() >= prob:
          continue
        d = max(2, int(round(duration * _uniform(rng, ev.member_scale))))
        s = start + int(rng.integers(-ev.member_jitter, ev.member_jitter + 1))
        a = min(1.0, apex * _uniform(rng, ev.member_scale))
        onset = max(1, int(round(d * _uniform(rng, ev.onset_fraction))))
        k = _AU_INDEX[au]
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
  brightness = _uniform(rng, n.brightness_video) * (1.0 + n.brightness_frame * smooth())
  extra_blur = rng.uniform(size=num_frames) < n.motion_blur_prob
  f32 = lambda x: np.asarray(x, np.float32)
  return Script(
      intensities=intensities, labels=labels, face_present=face_present,
      rotation_deg=f32(rotation), scale=f32(scale), tx=f32(tx), ty=f32(ty), yaw=f32(yaw),
      blink=blink, gaze=f32(gaze), brightness=f32(brightness), extra_blur=extra_blur)


# ---------------------------------------------------------------------------------------------
# Drawing.
# ---------------------------------------------------------------------------------------------


class _Canvas:
  """An RGB image plus a silhouette mask, drawn in fraction-of-side coordinates."""

  def __init__(self, side: int, fill: Color):
    self.side = side
    self.rgb = np.empty((side, side, 3), np.uint8)
    self.rgb[:] = np.asarray(fill, np.float32).round().astype(np.uint8)
    self.mask = np.zeros((side, side), np.uint8)

  def _pts(self, pts) -> np.ndarray:
    return np.round(np.asarray(pts, np.float64) * (self.side * _SUBPIXEL)).astype(np.int32)

  def fill(self, pts, color: Color, silhouette: bool = False) -> None:
    p = [self._pts(pts)]
    cv2.fillPoly(self.rgb, p, color, cv2.LINE_AA, _SHIFT)
    if silhouette:
      cv2.fillPoly(self.mask, p, 255, cv2.LINE_AA, _SHIFT)

  def line(self, pts, color: Color, width: float) -> None:
    thickness = max(1, int(round(width * self.side)))
    cv2.polylines(self.rgb, [self._pts(pts)], False, color, thickness, cv2.LINE_AA, _SHIFT)

  def circle(self, center, radius: float, color: Color) -> None:
    c = tuple(int(v) for v in self._pts(center))
    cv2.circle(self.rgb, c, int(round(radius * self.side * _SUBPIXEL)), color, -1,
               cv2.LINE_AA, _SHIFT)

  def blob(self, center, sigma: float, color: Color, alpha: float) -> None:
    """Blends `color` in with a gaussian weight alpha * exp(-r^2 / 2 sigma^2)."""
    if alpha <= 0:
      return
    cx, cy, s = center[0] * self.side, center[1] * self.side, sigma * self.side
    r = int(3 * s) + 1
    x0, x1 = max(0, int(cx) - r), min(self.side, int(cx) + r + 1)
    y0, y1 = max(0, int(cy) - r), min(self.side, int(cy) + r + 1)
    if x0 >= x1 or y0 >= y1:
      return
    gx = np.exp(-0.5 * ((np.arange(x0, x1) + 0.5 - cx) / s) ** 2)
    gy = np.exp(-0.5 * ((np.arange(y0, y1) + 0.5 - cy) / s) ** 2)
    w = (alpha * gy[:, None] * gx[None, :])[..., None].astype(np.float32)
    roi = self.rgb[y0:y1, x0:x1].astype(np.float32)
    roi += w * (np.asarray(color, np.float32) - roi)
    self.rgb[y0:y1, x0:x1] = np.clip(roi + 0.5, 0, 255).astype(np.uint8)


def _arc(cx, cy, rx, ry, a0, a1, num=48) -> np.ndarray:
  """(num, 2) points of an ellipse from angle a0 to a1 (radians; 0 = +x, pi/2 = down)."""
  a = np.linspace(a0, a1, num)
  return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], axis=1)


def _quadratic(p0, p1, p2, num=16) -> np.ndarray:
  """(num, 2) the parabola through p0, p1, p2 at parameters 0, 1/2, 1."""
  u = np.linspace(0.0, 1.0, num)[:, None]
  p0, p1, p2 = (np.asarray(p, np.float64) for p in (p0, p1, p2))
  return (p0 * (2 * u - 1) * (u - 1) + p1 * 4 * u * (1 - u) + p2 * u * (2 * u - 1))


def _ribbon(center_line: np.ndarray, widths: np.ndarray) -> np.ndarray:
  """(2N, 2) polygon of a stroke of varying width around an (N, 2) centre line."""
  d = np.gradient(center_line, axis=0)
  normal = np.stack([-d[:, 1], d[:, 0]], axis=1)
  normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-9
  half = 0.5 * widths[:, None] * normal
  return np.concatenate([center_line + half, (center_line - half)[::-1]])


def _au(intensities: np.ndarray | Mapping[int, float], au: int) -> float:
  if isinstance(intensities, Mapping):
    return float(intensities.get(au, 0.0))
  return float(np.clip(intensities[_AU_INDEX[au]], 0.0, 1.0))


def _draw_face(ident: Identity, intensities, config: SyntheticConfig, side: int,
               yaw: float = 0.0, blink: float = 0.0, gaze=(0.0, 0.0)) -> _Canvas:
  """Draws the upright face (no background) on a side x side canvas with its silhouette.

  Sizes that decide what an AU does live in ``AuEffects`` and the person's in ``Identity``;
  the bare small numbers below are the cartoon's proportions (where a stroke starts relative
  to its landmark), fixed like the shape of a glyph.
  """
  f, e, n = config.face, config.effects, config.nuisance
  i = {au: _au(intensities, au) for au in AU_ORDER}
  c = _Canvas(side, ident.background)
  crease = lambda base, strength: _mix(base, (0.0, 0.0, 0.0), f.crease_darkness * strength)
  skin = ident.skin
  dx = yaw * n.yaw_shift  # inner features slide sideways with yaw
  ox = ident.face_cx + n.yaw_oval * dx
  cx = ident.face_cx + dx
  drop = e.jaw_drop * i[26]

  # Silhouette: hair behind the head, ears, neck and shirt, then the face oval whose lower
  # half follows the jaw.
  if ident.has_hair:
    c.fill(_arc(ox, ident.face_cy - 0.1, ident.face_rx * 1.12, ident.face_ry * 0.85, 0,
                2 * math.pi), ident.hair, silhouette=True)
  c.fill(_arc(ox, 1.2, 0.48, 0.3, 0, 2 * math.pi), ident.shirt, silhouette=True)
  neck_w = ident.face_rx * f.neck_half_width
  c.fill([(ox - neck_w, ident.face_cy), (ox + neck_w, ident.face_cy), (ox + neck_w, 1.1),
          (ox - neck_w, 1.1)], _mix(skin, (0, 0, 0), 0.25), silhouette=True)
  for s in (-1, 1):
    c.fill(_arc(ox + s * ident.face_rx * 0.97, ident.eye_y + f.ear_y_below_eye,
                f.ear_half_size[0], f.ear_half_size[1], 0, 2 * math.pi),
           _mix(skin, (0, 0, 0), 0.12), silhouette=True)
  lower = _arc(ox, ident.face_cy, ident.face_rx, ident.face_ry, 0, math.pi)
  # The jaw hinges behind the cheeks: the chin drops fully, the sides of the face barely.
  lower[:, 1] += drop * np.sin(np.linspace(0, math.pi, len(lower))) ** 3
  oval = np.concatenate([
      _arc(ox, ident.face_cy, ident.face_rx, ident.face_ry, math.pi, 2 * math.pi), lower])
  c.fill(oval, skin, silhouette=True)

  # Cheeks (AU6 lifts and flushes them), drawn first so features sit on top.
  for s in (-1, 1):
    c.blob((cx + s * ident.cheek_dx, ident.cheek_y - e.cheek_raise * i[6]), ident.cheek_sigma,
           _mix(skin, f.lip_red, 0.6), ident.cheek_alpha + e.cheek_flush * i[6])

  # Eyes: sclera, iris and pupil, then skin-coloured lids clip them to the lid curves.
  t = np.linspace(-1.0, 1.0, 17)
  bulge = np.sqrt(1.0 - t ** 2)
  for s in (-1, 1):
    ex, ey = cx + s * ident.eye_dx, ident.eye_y
    ew = ident.eye_w * (1.0 - s * n.yaw_squash * yaw)
    up = ident.eye_h * (1.0 - e.upper_lid_lower_7 * i[7]) * (1.0 - blink)
    low = ident.eye_h * (1.0 - e.lower_lid_raise_7 * i[7]) * (1.0 - e.lower_lid_raise_6 * i[6])
    xs = ex + s * t * ew  # t = -1 at the inner corner, +1 at the outer corner
    tilt = -ident.eye_tilt * (t + 1) / 2
    upper = np.stack([xs, ey + tilt - up * bulge], axis=1)
    lower = np.stack([xs, ey + tilt + low * bulge], axis=1)
    c.fill(_arc(ex, ey, ew * 1.05, ident.eye_h * 1.1, 0, 2 * math.pi), f.sclera)
    iris_c = (ex + gaze[0] * ew, ey + gaze[1] * ident.eye_h)
    c.circle(iris_c, ident.iris_r, ident.iris)
    c.circle(iris_c, ident.iris_r * f.pupil_ratio, (15, 10, 10))
    reach = ident.eye_h * 1.6  # covers the sclera ellipse and the iris
    side_pad = ew * 0.3 * s
    c.fill(np.concatenate([[(xs[0] - side_pad, ey - reach)], [(xs[0] - side_pad, ey)], upper,
                           [(xs[-1] + side_pad, ey + tilt[-1]),
                            (xs[-1] + side_pad, ey - reach)]]), skin)
    c.fill(np.concatenate([[(xs[0] - side_pad, ey + reach)], [(xs[0] - side_pad, ey)], lower,
                           [(xs[-1] + side_pad, ey + tilt[-1]),
                            (xs[-1] + side_pad, ey + reach)]]), skin)
    c.line(upper, (25, 15, 12), f.lash_width)
    # AU7 tenses the lower lid: its rim darkens and a fold appears beneath it.
    c.line(lower, crease(skin, 0.6 + 0.4 * i[7]), f.line_width)
    if i[7] > 0:
      c.line(lower[3:-3] + (0.0, e.lid_fold_offset), crease(skin, i[7]), f.line_width)
    if i[6] > 0:
      # AU6: crow's feet fan out of the outer corner; the infraorbital furrow deepens.
      corner = np.array([xs[-1] + s * 0.01, ey + tilt[-1]])
      for angle in (-e.crows_feet_spread, 0.0, e.crows_feet_spread):
        tip = corner + e.crows_feet_length * np.array([s * math.cos(angle), math.sin(angle)])
        c.line([corner, tip], crease(skin, i[6]), f.line_width)
      c.line(_quadratic((ex - s * ew * 0.6, ey + ident.eye_h + 0.04),
                        (ex, ey + ident.eye_h + 0.055 - 0.5 * e.cheek_raise * i[6]),
                        (ex + s * ew * 1.1, ey + ident.eye_h + 0.02)),
             crease(skin, 0.8 * i[6]), f.line_width)

  # Brows: inner / middle / outer points; AU1 lifts the inner end, AU2 the outer end, AU4
  # pulls them down and together.
  brow_y = ident.eye_y - ident.brow_gap
  for s in (-1, 1):
    ex = cx + s * ident.eye_dx
    inner = np.array([ex - s * ident.eye_w * 0.85, brow_y + ident.brow_inner_dy])
    middle = np.array([ex + s * ident.eye_w * 0.2, brow_y - ident.brow_arch])
    outer = np.array([ex + s * ident.eye_w * 1.2, brow_y + 0.012])
    inner += (-s * e.brow_knit * i[4], -e.inner_brow_raise * i[1]
              + (e.brow_lower + e.brow_inner_lower) * i[4])
    middle += (0.0, -0.4 * e.inner_brow_raise * i[1] - 0.5 * e.outer_brow_raise * i[2]
               + e.brow_lower * i[4])
    outer += (0.0, -e.outer_brow_raise * i[2] + e.brow_lower * i[4])
    line = _quadratic(inner, middle, outer)
    widths = ident.brow_thickness * np.linspace(1.15, 0.6, len(line))
    c.fill(_ribbon(line, widths), ident.brow)
    if i[2] > 0:  # AU2: short forehead wrinkles above the lateral brow.
      for k in range(2):
        y = outer[1] - e.forehead_wrinkle_offset - e.forehead_wrinkle_gap * k
        c.line(_quadratic((ex - 0.02, y + 0.004), (ex + s * 0.02, y - 0.006),
                          (ex + s * 0.06, y + 0.004)), crease(skin, i[2]), f.line_width)
  if i[1] > 0:  # AU1: wrinkles across the centre of the forehead.
    top = brow_y - e.inner_brow_raise * i[1] - e.forehead_wrinkle_offset
    for k in range(2):
      y = top - e.forehead_wrinkle_gap * k
      c.line(_quadratic((cx - 0.065, y + 0.006), (cx, y - 0.006), (cx + 0.065, y + 0.006)),
             crease(skin, i[1]), f.line_width)
  if i[4] > 0:  # AU4: vertical glabella lines between the knitted brows.
    for s in (-1, 1):
      x = cx + s * e.glabella_dx
      c.line([(x, brow_y - 0.01), (x - s * 0.004, brow_y - 0.01 + e.glabella_length)],
             crease(skin, i[4]),
             f.line_width)

  # Nose: bridge, nostrils and wings (AU10 flares and lifts the nostrils).
  nx = cx + yaw * n.yaw_nose
  ny = ident.nose_y - 0.3 * e.upper_lip_raise * i[10]
  nose_w = ident.nose_w * (1.0 + e.nostril_flare * i[10])
  c.line([(cx, ident.eye_y + 0.01), (nx + 0.2 * (nx - cx), ny - 0.04)],
         crease(skin, 0.35), f.line_width)
  for s in (-1, 1):
    c.fill(_arc(nx + s * nose_w * 0.45, ny, nose_w * 0.28, 0.009, 0, 2 * math.pi),
           crease(skin, 1.4))
    # The wing curves round the outside of each nostril.
    a0 = -0.5 * math.pi if s > 0 else 0.5 * math.pi
    c.line(_arc(nx + s * nose_w * 0.7, ny - 0.01, nose_w * 0.35, 0.022, a0, a0 + math.pi),
           crease(skin, 0.8), f.line_width)

  # Mouth, parametrised along t in [-1, 1] corner to corner. The lip line bends by `curve`
  # (AU12 up, AU15 down); AU23 narrows it, AU23/24 thin the lips, AU10 lifts the upper lip,
  # AU25 parts the lips and AU26 drops the lower lip with the jaw.
  mx = cx
  half_w = ident.mouth_w * (1.0 - e.mouth_narrow * i[23]) + e.corner_widen * i[12]
  curve = ident.mouth_curve + e.corner_raise * i[12] - e.corner_lower * i[15]
  thin = (1.0 - e.lip_thin_23 * i[23]) * (1.0 - e.lip_thin_24 * i[24])
  # A falling jaw opens the mouth fully when the lips part (AU25) and partly otherwise; the
  # rest of the drop stretches the lower lip, so the chin always moves by `drop`.
  gap = e.lips_part * i[25] + drop * max(i[25], e.jaw_opens_lips)
  stretch = max(0.0, drop - 0.8 * gap)
  t = np.linspace(-1.0, 1.0, 25)
  xs = mx + t * half_w
  line = ident.mouth_y - curve * t ** 2
  full = (1.0 - t ** 2) ** 0.6
  opening = np.sqrt(1.0 - t ** 2)
  raise10 = e.upper_lip_raise * i[10] * full
  upper_in = line - 0.2 * gap * opening - raise10
  upper_out = upper_in - ident.upper_lip * thin * full * (1.0 + 0.2 * np.cos(3 * math.pi * t))
  lower_in = line + 0.8 * gap * opening
  lower_out = lower_in + (ident.lower_lip * thin + stretch) * full
  lip = _mix(ident.lip, (60.0, 10.0, 20.0), e.lip_darken_23 * i[23])
  pts = lambda ys: np.stack([xs, ys], axis=1)
  if i[10] > 0:  # AU10: nasolabial folds from the nose wings to beyond the mouth corners.
    for s in (-1, 1):
      c.line(_quadratic((nx + s * nose_w * 1.05, ny - 0.005),
                        (mx + s * (half_w + 0.03), ident.mouth_y - 0.035),
                        (mx + s * (half_w + 0.025), ident.mouth_y + 0.035)),
             crease(skin, i[10]), f.line_width * 1.3)
  if i[24] > 0:  # AU24: the chin boss bulges and a crease forms under the lower lip.
    chin = (mx, lower_out[len(t) // 2] + e.chin_bulge_offset)
    c.blob(chin, e.chin_bulge_sigma, _mix(skin, (255, 255, 255), 0.5), e.chin_bulge * i[24])
    c.line(pts(lower_out + e.mentolabial_offset)[5:-5], crease(skin, i[24]),
           f.line_width * 1.3)
  if gap > 1e-3:
    c.fill(np.concatenate([pts(upper_in), pts(lower_in)[::-1]]), f.mouth_inside)
    teeth = np.minimum(upper_in + f.teeth_height * full, lower_in)
    c.fill(np.concatenate([pts(upper_in)[4:-4], pts(teeth)[4:-4][::-1]]), f.teeth)
  elif i[10] > 0:  # a lifted upper lip bares the teeth even with the mouth closed
    c.fill(np.concatenate([pts(upper_in), pts(line)[::-1]]), f.teeth)
  c.fill(np.concatenate([pts(upper_out), pts(upper_in)[::-1]]), lip)
  c.fill(np.concatenate([pts(lower_in), pts(lower_out)[::-1]]), lip)
  c.line(pts(upper_in), crease(lip, 0.8), f.line_width)
  if i[23] > 0:  # AU23: vertical wrinkles on the tightened lips.
    for k in (6, 9, 15, 18):
      c.line([(xs[k], upper_out[k] + 0.003), (xs[k], lower_out[k] - 0.003)],
             crease(lip, 0.8 * i[23]), f.line_width * 0.8)
  for s, k in ((-1, 0), (1, -1)):
    corner = np.array([xs[k], line[k]])
    if i[12] > 0:  # AU12: dimple arcs just outside the pulled corners.
      h = e.dimple_height
      c.line(_quadratic(corner + (s * 0.6 * h, -h), corner + (s * h, 0.0),
                        corner + (s * 0.6 * h, h)), crease(skin, i[12]), f.line_width)
    if i[15] > 0:  # AU15: marionette lines down from the depressed corners.
      c.line([corner + (s * 0.006, 0.004), corner + (s * 0.016, e.marionette_length)],
             crease(skin, i[15]),
             f.line_width)

  # Hair cap over the top of the forehead, its line falling towards the temples.
  if ident.has_hair:
    top = _arc(ox, ident.face_cy, ident.face_rx * 1.01, ident.face_ry * 1.01, math.pi,
               2 * math.pi, 40)
    rel = (top[:, 0] - ox) / ident.face_rx
    hairline = ident.hairline_y + ident.hair_side_drop * rel ** 4
    c.fill(np.concatenate([top, np.stack([top[:, 0], np.maximum(top[:, 1], hairline)],
                                         axis=1)[::-1]]), ident.hair, silhouette=True)
  return c


def render_background(ident: Identity, image_size: int) -> np.ndarray:
  """(S, S, 3) uint8 the scene behind the person: a gradient and blurred clutter."""
  ramp = np.linspace(0.0, 1.0, image_size, dtype=np.float32)[:, None, None]
  bg = (np.asarray(ident.background, np.float32) * (1 - ramp)
        + np.asarray(ident.background2, np.float32) * ramp)
  bg = np.broadcast_to(bg, (image_size, image_size, 3)).copy()
  for x0, y0, x1, y1, *rgb in ident.clutter:
    p = lambda v: int(round(v * image_size))
    cv2.rectangle(bg, (p(x0), p(y0)), (p(x1), p(y1)), rgb, -1)
  bg = cv2.GaussianBlur(bg, (0, 0), image_size / 40)
  return np.clip(bg + 0.5, 0, 255).astype(np.uint8)


def render_face(ident: Identity, intensities, config: SyntheticConfig = SyntheticConfig(), *,
                yaw: float = 0.0, blink: float = 0.0, gaze=(0.0, 0.0)) -> np.ndarray:
  """The canonical face: upright, centred, on a flat background, no lighting, blur or noise.

  A pure function of its arguments, so two calls that differ only in one AU differ only where
  that AU acts.

  Args:
    ident: the person (``sample_identity``).
    intensities: (12,) AU intensities in [0, 1] in ``AU_ORDER``, or a mapping AU -> intensity
      (absent AUs are 0).
    config: the generator parameters (effect sizes, image size, supersampling).
    yaw: in [-1, 1], the sideways slide of the inner features.
    blink: in [0, 1], upper-lid closure.
    gaze: iris offset in eye half-widths (x, y).

  Returns:
    (image_size, image_size, 3) uint8 RGB.
  """
  side = config.image_size * config.supersample
  canvas = _draw_face(ident, intensities, config, side, yaw, blink, gaze)
  return cv2.resize(canvas.rgb, (config.image_size,) * 2, interpolation=cv2.INTER_AREA)


def render_frame(ident: Identity, camera: Camera, script: Script, frame: int,
                 rng: np.random.Generator, config: SyntheticConfig = SyntheticConfig(),
                 background: np.ndarray | None = None) -> np.ndarray:
  """One frame as the camera sees it: posed face over the scene, lit, blurred and noisy.

  Args:
    ident, camera, script: the video (``sample_identity``, ``sample_camera``,
      ``simulate_script``).
    frame: 0-based frame index into ``script``.
    rng: draws the sensor noise.
    config: generator parameters.
    background: (S, S, 3) uint8 ``render_background(ident, S)``, passed in to reuse it.

  Returns:
    (image_size, image_size, 3) uint8 RGB.
  """
  size, n = config.image_size, config.nuisance
  side = size * config.supersample
  canvas = _draw_face(ident, script.intensities[frame], config, side,
                      float(script.yaw[frame]), float(script.blink[frame]),
                      tuple(script.gaze[frame].tolist()))
  # Similarity transform about the face centre, then area-downsampling to the stored size.
  center = (ident.face_cx * side, ident.face_cy * side)
  m = cv2.getRotationMatrix2D(center, float(script.rotation_deg[frame]),
                              float(script.scale[frame]))
  m[:, 2] += (float(script.tx[frame]) * side, float(script.ty[frame]) * side)
  rgba = np.dstack([canvas.rgb, canvas.mask])
  rgba = cv2.warpAffine(rgba, m, (side, side), flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=0)
  rgba = cv2.resize(rgba, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
  if background is None:
    background = render_background(ident, size)
  alpha = rgba[..., 3:] / 255.0
  img = rgba[..., :3] * alpha + background.astype(np.float32) * (1.0 - alpha)
  # Lighting: a brightness gain with a linear ramp across the image, and a colour cast.
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
  ramp = xx * math.cos(camera.ramp_angle) + yy * math.sin(camera.ramp_angle)
  gain = float(script.brightness[frame]) * (1.0 + camera.ramp * ramp)
  img = img * gain[..., None] * np.asarray(camera.tint, np.float32)
  sigma = camera.blur_sigma + (n.motion_blur_sigma if script.extra_blur[frame] else 0.0)
  if sigma > 0.05:
    img = cv2.GaussianBlur(img, (0, 0), sigma)
  img += camera.noise_std * rng.standard_normal(img.shape, dtype=np.float32)
  return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
  """(H, W, 3) uint8 RGB -> JPEG bytes (deterministic for a given libjpeg)."""
  ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]),
                         [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
  if not ok:
    raise RuntimeError("JPEG encoding failed")
  return buf.tobytes()


# ---------------------------------------------------------------------------------------------
# Writing a dataset.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VideoSpec:
  """One video to write: its name, split and the keys of its random stream."""
  name: str
  split: str  # "train" or "validation"
  num_frames: int
  seed_key: tuple[int, ...]  # (seed, split code, slot, person)


_SPLIT_CODES = {"train": 0, "validation": 1}


def plan_videos(seed: int, config: SyntheticConfig = SyntheticConfig()) -> list[VideoSpec]:
  """The videos of both splits: names, lengths and random-stream keys.

  Each split is a list of slots; the last ``pair_fraction`` of the videos are two-person slots
  written as ``<id>_left`` / ``<id>_right`` (same length, different people). Keys depend on
  (seed, split, slot) only, so growing one split never changes the other.
  """
  specs = []
  for split, count in (("train", config.num_train_videos),
                       ("validation", config.num_val_videos)):
    code = _SPLIT_CODES[split]
    num_pairs = int(round(count * config.pair_fraction / 2))
    if config.pair_fraction > 0 and count >= 2:
      num_pairs = max(num_pairs, 1)
    num_single = count - 2 * num_pairs
    for slot in range(num_single + num_pairs):
      rng = np.random.default_rng((seed, code, slot))
      jitter = config.frames_jitter * config.frames_per_video
      num_frames = int(rng.integers(round(config.frames_per_video - jitter),
                                    round(config.frames_per_video + jitter) + 1))
      num_frames = max(num_frames, 1)
      base = f"{config.video_prefix}_{split[:5]}_{slot:03d}"
      if slot < num_single:
        specs.append(VideoSpec(base, split, num_frames, (seed, code, slot, 0)))
      else:
        for person, suffix in enumerate(PAIR_SUFFIXES):
          specs.append(VideoSpec(base + suffix, split, num_frames,
                                 (seed, code, slot, person + 1)))
  return specs


def make_video(spec: VideoSpec, config: SyntheticConfig = SyntheticConfig()
               ) -> tuple[Identity, Camera, Script, np.random.Generator]:
  """The person, camera and script of one video, and the generator left for its noise."""
  rng = np.random.default_rng(spec.seed_key)
  ident = sample_identity(rng, config)
  camera = sample_camera(rng, config)
  script = simulate_script(rng, spec.num_frames, config)
  return ident, camera, script, rng


def format_labels(labels: np.ndarray) -> str:
  """(T, 12) int labels -> the text of an Aff-Wild2 challenge label file."""
  lines = [",".join(aus.names(AU_ORDER))]
  lines += [",".join(str(int(v)) for v in row) for row in labels]
  return "\n".join(lines) + "\n"


def write_video(out_dir: str | os.PathLike, spec: VideoSpec,
                config: SyntheticConfig = SyntheticConfig()) -> dict[str, Any]:
  """Renders one video into the Aff-Wild2 layout under out_dir; returns its counts."""
  out = pathlib.Path(out_dir)
  ident, camera, script, rng = make_video(spec, config)
  label_path = out / LABELS_DIR / SPLIT_DIRS[spec.split] / f"{spec.name}.txt"
  label_path.parent.mkdir(parents=True, exist_ok=True)
  label_path.write_text(format_labels(script.labels))
  frame_dir = out / IMAGES_DIR / spec.name
  frame_dir.mkdir(parents=True, exist_ok=True)
  background = render_background(ident, config.image_size)
  for t in np.flatnonzero(script.face_present):
    image = render_frame(ident, camera, script, int(t), rng, config, background)
    (frame_dir / FRAME_NAME.format(int(t) + FIRST_FRAME)).write_bytes(
        encode_jpeg(image, camera.jpeg_quality))
  return {
      "name": spec.name, "split": spec.split, "frames": spec.num_frames,
      "images": int(script.face_present.sum()),
      "positives": (script.labels == 1).sum(axis=0).tolist(),
      "annotated": (script.labels != NOT_ANNOTATED).sum(axis=0).tolist(),
  }


def _params(seed: int, config: SyntheticConfig) -> dict[str, Any]:
  """The JSON-normalised identity of a generation (what makes two runs produce the same data)."""
  params = {"version": GENERATOR_VERSION, "seed": seed, "config": dataclasses.asdict(config)}
  return json.loads(json.dumps(params))


def _summarise(videos: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
  names = aus.names(AU_ORDER)
  summary: dict[str, Any] = {"seconds": round(seconds, 2), "splits": {}}
  for split in SPLIT_DIRS:
    vs = [v for v in videos if v["split"] == split]
    pos = np.sum([v["positives"] for v in vs], axis=0) if vs else np.zeros(len(names))
    ann = np.sum([v["annotated"] for v in vs], axis=0) if vs else np.zeros(len(names))
    summary["splits"][split] = {
        "videos": len(vs),
        "pairs": sum(v["name"].endswith(PAIR_SUFFIXES[0]) for v in vs),
        "frames": int(sum(v["frames"] for v in vs)),
        "images": int(sum(v["images"] for v in vs)),
        "positive_rate": {n: round(float(p / max(a, 1)), 4)
                          for n, p, a in zip(names, pos, ann)},
    }
  return summary


def generate(out_dir: str | os.PathLike, *, seed: int = 0,
             num_train_videos: int | None = None, num_val_videos: int | None = None,
             frames_per_video: int | None = None, image_size: int | None = None,
             config: SyntheticConfig | None = None, num_workers: int = 1,
             overwrite: bool = False) -> dict[str, Any]:
  """Writes a synthetic Aff-Wild2-layout dataset into out_dir (idempotent).

  Args:
    out_dir: the dataset root (gets ``cropped_aligned/``, ``AU_Detection_Challenge/``,
      ``generator.json``).
    seed: the dataset's seed.
    num_train_videos, num_val_videos, frames_per_video, image_size: override these fields of
      ``config``.
    config: every other parameter; ``SyntheticConfig()`` by default.
    num_workers: processes rendering videos in parallel (the output does not depend on it).
    overwrite: replace a folder of real (non-generated) data in the way; off by default.

  Returns:
    The summary: per split the number of videos, pairs, frames, images, and the positive rate
    of each AU (over annotated frames); ``"skipped": True`` if out_dir already held exactly
    this generation.
  """
  config = config or SyntheticConfig()
  overrides = {k: v for k, v in dict(
      num_train_videos=num_train_videos, num_val_videos=num_val_videos,
      frames_per_video=frames_per_video, image_size=image_size).items() if v is not None}
  config = dataclasses.replace(config, **overrides)
  out = pathlib.Path(out_dir)
  params = _params(seed, config)
  params_path = out / PARAMS_FILENAME
  if params_path.exists():
    previous = json.loads(params_path.read_text())
    if previous.get("params") == params:
      return {**previous["summary"], "skipped": True}
    params_path.unlink()  # our own older generation: regenerate in place
  elif not overwrite and any((out / d).exists() for d in (IMAGES_DIR, LABELS_DIR)):
    raise FileExistsError(
        f"{out} holds {IMAGES_DIR}/ or {LABELS_DIR}/ but no {PARAMS_FILENAME}: it may be real "
        "data; pass overwrite=True (--overwrite) to replace it")
  for d in (IMAGES_DIR, LABELS_DIR):
    shutil.rmtree(out / d, ignore_errors=True)
  out.mkdir(parents=True, exist_ok=True)

  start = time.perf_counter()
  specs = plan_videos(seed, config)
  if num_workers > 1:
    with concurrent.futures.ProcessPoolExecutor(num_workers) as pool:
      videos = list(pool.map(write_video, [out] * len(specs), specs, [config] * len(specs)))
  else:
    videos = [write_video(out, spec, config) for spec in specs]
  summary = _summarise(videos, time.perf_counter() - start)
  params_path.write_text(json.dumps({"params": params, "summary": summary}, indent=1) + "\n")
  return {**summary, "skipped": False}


def contact_sheet(out_dir: str | os.PathLike, path: str | os.PathLike, *, num: int = 16,
                  columns: int = 4, zoom: int = 2, split: str = "train", seed: int = 0) -> None:
  """Saves a grid of `num` random frames of a split, each captioned with its active AUs."""
  root = pathlib.Path(out_dir)
  label_files = sorted((root / LABELS_DIR / SPLIT_DIRS[split]).glob("*.txt"))
  rng = np.random.default_rng(seed)
  tiles = []
  while len(tiles) < num:
    label_path = label_files[rng.integers(len(label_files))]
    rows = label_path.read_text().split("\n")[1:-1]
    t = int(rng.integers(len(rows)))
    image_path = root / IMAGES_DIR / label_path.stem / FRAME_NAME.format(t + FIRST_FRAME)
    if not image_path.exists():
      continue
    image = cv2.imread(str(image_path))
    image = cv2.resize(image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
    values = rows[t].split(",")
    active = [str(au) for au, v in zip(AU_ORDER, values) if v == "1"]
    caption = np.full((28, image.shape[1], 3), 255, np.uint8)
    unannotated = all(v == str(NOT_ANNOTATED) for v in values)
    text = "not annotated" if unannotated else (",".join(active) or "-")
    for k, chunk in enumerate((text[:22], text[22:])):
      cv2.putText(caption, chunk, (2, 11 + 13 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0),
                  1, cv2.LINE_AA)
    tiles.append(np.vstack([image, caption]))
  rows_img = [np.hstack(tiles[r:r + columns]) for r in range(0, num, columns)]
  cv2.imwrite(str(path), np.vstack(rows_img))


def main(argv: Sequence[str] | None = None) -> None:
  defaults = SyntheticConfig()
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out_dir", required=True, help="dataset root to write")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--num_train_videos", type=int, default=defaults.num_train_videos)
  parser.add_argument("--num_val_videos", type=int, default=defaults.num_val_videos)
  parser.add_argument("--frames_per_video", type=int, default=defaults.frames_per_video)
  parser.add_argument("--image_size", type=int, default=defaults.image_size)
  parser.add_argument("--num_workers", type=int, default=1)
  parser.add_argument("--overwrite", action="store_true",
                      help="replace non-generated data in out_dir")
  parser.add_argument("--contact_sheet", default=None, help="also save a PNG grid of frames")
  args = parser.parse_args(argv)
  summary = generate(args.out_dir, seed=args.seed, num_train_videos=args.num_train_videos,
                     num_val_videos=args.num_val_videos,
                     frames_per_video=args.frames_per_video, image_size=args.image_size,
                     num_workers=args.num_workers, overwrite=args.overwrite)
  print(json.dumps(summary, indent=1))
  if args.contact_sheet:
    contact_sheet(args.out_dir, args.contact_sheet)


if __name__ == "__main__":
  main(sys.argv[1:])
