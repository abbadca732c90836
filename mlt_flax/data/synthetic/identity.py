"""Who is filmed and how: one person in one scene (``Identity``) and the capture (``Camera``).

``sample_identity`` draws face shape, feature sizes and positions, skin, hair and background,
plus neutral-face quirks (slanted brows, down-turned mouth corners) that mimic AUs across
identities, so only *change* on a face is a reliable cue. ``sample_camera`` draws a video's
blur, noise, JPEG quality, colour cast and lighting ramp.
"""

import dataclasses
import math

import numpy as np

from mlt_flax.data.synthetic.config import Color, SyntheticConfig, mix, uniform


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


def sample_identity(rng: np.random.Generator, config: SyntheticConfig = SyntheticConfig()
                    ) -> Identity:
  """Draws one person (face geometry, colours) and their scene background."""
  f = config.face
  u = lambda r: uniform(rng, r)
  skin = np.asarray(mix(f.skin_light, f.skin_dark, rng.uniform()))
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
      skin=skin, hair=hair, brow=mix(hair, f.brow_dark, u(f.brow_tint)),
      lip=mix(skin, f.lip_red, u(f.lip_tint)),
      iris=f.iris_colors[rng.integers(len(f.iris_colors))], shirt=shirt,
      background=tuple(rng.uniform(*f.background_range, 3).tolist()),
      background2=tuple(rng.uniform(*f.background_range, 3).tolist()),
      clutter=tuple(clutter))


def sample_camera(rng: np.random.Generator, config: SyntheticConfig = SyntheticConfig()
                  ) -> Camera:
  """Draws one video's capture settings."""
  n = config.nuisance
  return Camera(
      blur_sigma=uniform(rng, n.blur_sigma), noise_std=uniform(rng, n.noise_std),
      jpeg_quality=int(rng.integers(n.jpeg_quality[0], n.jpeg_quality[1] + 1)),
      tint=tuple((1.0 + rng.normal(0.0, n.tint, 3)).tolist()),
      ramp=uniform(rng, n.ramp), ramp_angle=float(rng.uniform(0, 2 * math.pi)))
