"""Every number of the synthetic generator, in one place: frozen dataclasses.

``SyntheticConfig`` holds the dataset's size and four groups: ``FaceStyle`` (the ranges people
are drawn from), ``AuEffects`` (what each AU does to a face), ``EventModel`` (the AU timeline)
and ``Nuisance`` (what changes pixels but not labels). Lengths are fractions of the image side
(so they hold at any image_size); y grows downwards. A ``Range`` is drawn uniformly
(``uniform``); colours are RGB 0-255 and blend with ``mix``.
"""

import dataclasses
from typing import Sequence

import numpy as np

Range = tuple[float, float]
Color = tuple[float, float, float]


def uniform(rng: np.random.Generator, r: Range) -> float:
  """One draw from a Range, uniform in [lo, hi]."""
  return float(rng.uniform(r[0], r[1]))


def mix(a: Sequence[float], b: Sequence[float], t: float) -> Color:
  """Linear colour interpolation a -> b, t in [0, 1]."""
  return tuple(float(x + (y - x) * t) for x, y in zip(a, b))


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
  # Videos in Test_Set, the labelled split nothing selects on (0: none, and the generation's
  # identity is what it was before the split existed).
  num_test_videos: int = 0
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
