"""Drawing the faces: ``render_face`` (canonical, pure) and ``render_frame`` (as filmed).

``render_face`` is the upright, noiseless face for given AU intensities, each AU a local
change where its muscle acts (brows, lids, cheeks, lips, jaw); ``render_frame`` adds pose
(rotation, scale, translation, yaw-like feature shift) over the scene background
(``render_background``), lighting, blur and sensor noise. Faces are drawn ``supersample``
times larger with anti-aliased cv2 primitives, then area-downsampled.
"""

import math
from typing import Mapping

import cv2
import numpy as np

from mlt_flax.data.synthetic.config import Color, SyntheticConfig, mix
from mlt_flax.data.synthetic.identity import Camera, Identity
from mlt_flax.data.synthetic.layout import AU_INDEX, AU_ORDER
from mlt_flax.data.synthetic.script import Script

# cv2 drawing takes integer points; 4 fractional bits give 1/16-pixel precision.
_SHIFT = 4
_SUBPIXEL = 1 << _SHIFT


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
  return float(np.clip(intensities[AU_INDEX[au]], 0.0, 1.0))


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
  crease = lambda base, strength: mix(base, (0.0, 0.0, 0.0), f.crease_darkness * strength)
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
          (ox - neck_w, 1.1)], mix(skin, (0, 0, 0), 0.25), silhouette=True)
  for s in (-1, 1):
    c.fill(_arc(ox + s * ident.face_rx * 0.97, ident.eye_y + f.ear_y_below_eye,
                f.ear_half_size[0], f.ear_half_size[1], 0, 2 * math.pi),
           mix(skin, (0, 0, 0), 0.12), silhouette=True)
  lower = _arc(ox, ident.face_cy, ident.face_rx, ident.face_ry, 0, math.pi)
  # The jaw hinges behind the cheeks: the chin drops fully, the sides of the face barely.
  lower[:, 1] += drop * np.sin(np.linspace(0, math.pi, len(lower))) ** 3
  oval = np.concatenate([
      _arc(ox, ident.face_cy, ident.face_rx, ident.face_ry, math.pi, 2 * math.pi), lower])
  c.fill(oval, skin, silhouette=True)

  # Cheeks (AU6 lifts and flushes them), drawn first so features sit on top.
  for s in (-1, 1):
    c.blob((cx + s * ident.cheek_dx, ident.cheek_y - e.cheek_raise * i[6]), ident.cheek_sigma,
           mix(skin, f.lip_red, 0.6), ident.cheek_alpha + e.cheek_flush * i[6])

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
  lip = mix(ident.lip, (60.0, 10.0, 20.0), e.lip_darken_23 * i[23])
  pts = lambda ys: np.stack([xs, ys], axis=1)
  if i[10] > 0:  # AU10: nasolabial folds from the nose wings to beyond the mouth corners.
    for s in (-1, 1):
      c.line(_quadratic((nx + s * nose_w * 1.05, ny - 0.005),
                        (mx + s * (half_w + 0.03), ident.mouth_y - 0.035),
                        (mx + s * (half_w + 0.025), ident.mouth_y + 0.035)),
             crease(skin, i[10]), f.line_width * 1.3)
  if i[24] > 0:  # AU24: the chin boss bulges and a crease forms under the lower lip.
    chin = (mx, lower_out[len(t) // 2] + e.chin_bulge_offset)
    c.blob(chin, e.chin_bulge_sigma, mix(skin, (255, 255, 255), 0.5), e.chin_bulge * i[24])
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
