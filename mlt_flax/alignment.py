"""5-point face alignment into Aff-Wild2-style 112x112 crops.

  similarity_transform(src, dst)      least-squares rotation + uniform scale + translation
  alignment_matrix(five_points, size) the (2, 3) map from frame pixels to the aligned crop
  align(frame, five_points, size)     the aligned (size, size, 3) uint8 crop

The five points are, in this order: the eye centres (the eye on the image's left first), the
nose tip, and the mouth corners (image left first), as mlt_flax.face_models.five_points gives
them. The transform is Umeyama's closed-form least-squares similarity (no reflection, no
shear: a face is only turned, scaled and moved, never distorted), from the five points to a
fixed template, and cv2.warpAffine resamples the frame through it. Parts of the crop outside
the frame are black, as in mlt_flax.faces.

Why this template. The ABAW organisers (Kollias et al., the ABAW competition papers: FG 2020,
arXiv:2001.11409; ICCV-W 2021, arXiv:2106.15318; CVPR-W 2022, arXiv:2202.10659, and the later
ones) describe Aff-Wild2's cropped_aligned frames as made by a face detector that also gives 5
facial landmarks (two eyes, nose, two mouth corners), a similarity transformation of those
landmarks for alignment, and a resize to 112x112x3. The detector they name is from their own
group at Imperial College (the SSH/RetinaFace family of Deng, Zafeiriou et al., the 5-point
detector of insightface), and 112x112 with 5 points is exactly insightface's ArcFace
alignment (`norm_crop`): the same group's, and the standard one for RetinaFace landmarks. So
the template is ArcFace's 112x112 one, TEMPLATE_112 below. The doubt that remains: the papers
give no template coordinates, the snippets above were read second hand (the search tools
here could not show the papers' pre-processing paragraphs, so the wording is recalled rather
than quoted), and no Aff-Wild2 frame was at hand to measure; a different margin (for example
the 96x112 SphereFace template padded to a square) would move the face by a few pixels. With
an Aff-Wild2 frame, run the detector and landmarks on it: its five points should land within
a few pixels of TEMPLATE_112 if the template is right.
"""

import math

import cv2
import numpy as np

ALIGNED_SIZE = 112  # Aff-Wild2 cropped_aligned frames are 112x112
# insightface's ArcFace template for 112x112 crops, (x, y) in OpenCV pixel coordinates: eye
# centres, nose tip, mouth corners (image left before image right).
TEMPLATE_112 = np.array([
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
], np.float64)
PAD_VALUE = 0  # black, where the crop reaches outside the frame
MAX_SUPERSAMPLING = 4  # the largest factor the crop is drawn at before it is area-shrunk


def template(size: int = ALIGNED_SIZE) -> np.ndarray:
  """The template's (5, 2) points for a size x size crop (TEMPLATE_112 scaled about pixel
  edges, so a 224 crop is the 112 crop drawn at twice the resolution)."""
  return (TEMPLATE_112 + 0.5) * (size / ALIGNED_SIZE) - 0.5


def similarity_transform(src, dst) -> np.ndarray:
  """The (2, 3) similarity (rotation, uniform scale, translation) that maps the (N, 2) points
  src onto dst with the least squared error (Umeyama 1991, reflections excluded)."""
  src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
  if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
    raise ValueError(f"expected two (N, 2) point sets with N >= 2, got {src.shape} and "
                     f"{dst.shape}")
  src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
  s, d = src - src_mean, dst - dst_mean
  variance = (s ** 2).sum() / len(src)
  if variance == 0:
    raise ValueError("the source points all coincide: no transform fits them")
  u, sigma, vt = np.linalg.svd(d.T @ s / len(src))
  sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
  rotation = u @ sign @ vt
  scale = (sigma * np.diag(sign)).sum() / variance
  linear = scale * rotation
  return np.hstack([linear, (dst_mean - linear @ src_mean)[:, None]])


def transform_points(matrix: np.ndarray, points) -> np.ndarray:
  """Applies a (2, 3) affine matrix to (N, 2) points."""
  points = np.asarray(points, np.float64)
  return points @ matrix[:, :2].T + matrix[:, 2]


def alignment_matrix(five_points, size: int = ALIGNED_SIZE) -> np.ndarray:
  """The (2, 3) similarity from frame pixels to a size x size aligned crop."""
  points = np.asarray(five_points, np.float64)
  if points.shape != (5, 2) or not np.isfinite(points).all():
    raise ValueError(f"expected five finite (x, y) points, got shape {points.shape}")
  return similarity_transform(points, template(size))


def align(frame_rgb, five_points, size: int = ALIGNED_SIZE) -> np.ndarray:
  """The aligned (size, size, 3) uint8 crop of the face whose five points are given.

  When the face is shrunk (a large face into 112 pixels), the crop is first drawn at k times
  the size and then area-averaged down by k, so that every source pixel counts instead of
  only the ones bilinear sampling lands on (which would alias hair and texture).
  """
  frame = np.asarray(frame_rgb)
  if frame.dtype != np.uint8 or frame.ndim != 3:
    raise ValueError(f"expected an (H, W, C) uint8 frame, got {frame.dtype} {frame.shape}")
  if size < 1:
    raise ValueError(f"size must be >= 1, got {size}")
  matrix = alignment_matrix(five_points, size)
  scale = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
  k = int(min(MAX_SUPERSAMPLING, max(1, math.floor(1 / scale))))
  # Drawn k times larger: crop pixel i covers big pixels k*i .. k*i + k - 1, centred at
  # k*i + (k - 1) / 2.
  big = np.hstack([k * matrix[:, :2], (k * matrix[:, 2] + (k - 1) / 2)[:, None]])
  crop = cv2.warpAffine(frame, big, (k * size, k * size), flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=(PAD_VALUE,) * 3)
  if k > 1:
    crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
  return crop
