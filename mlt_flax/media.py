"""Videos and photos read into RGB arrays: decoded lazily, checked, one-line errors.

  read_video(path)   -> Iterator[(H, W, 3) uint8 RGB], decoded one frame at a time
  read_image(path)   -> (H, W, 3) uint8 RGB (grey, alpha, 16-bit, EXIF orientation handled)
  video_info(path)   -> {'frames', 'fps', 'width', 'height'} from the container's header
  check_path(path, extensions, kind)  -> pathlib.Path of a regular file with a known extension

read_video decodes with cv2.VideoCapture one frame at a time and keeps only the frame it is
yielding, so memory stays flat on long videos. Bad inputs (a missing path, an unsupported
extension, a file that is not a readable image or video, a video that decodes to zero frames)
raise FaceInputError with a one-line message that names the path and what was expected.
Face detection, tracking and cropping of these frames is `mlt_flax.faces`.
"""

import contextlib
import logging
import pathlib
from typing import Iterator

import cv2
import numpy as np
from PIL import Image
from PIL import ImageOps
from PIL import UnidentifiedImageError

from mlt_flax import console

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp"})
IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS
MEDIA_KINDS = "a video or image file"

UINT8_MAX = 255
UINT16_TO_UINT8 = 257  # 65535 / 255: maps the 16-bit range onto the 8-bit one exactly
SIXTEEN_BIT_MAX = 65535
RGB_CHANNELS = 3


class FaceInputError(ValueError):
  """A path that is not a readable image or video with at least one frame."""


def check_path(path, extensions, kind: str) -> pathlib.Path:
  """``path`` as a Path when it is a regular file whose extension is in ``extensions`` (any
  extension when None); FaceInputError naming ``kind``, what was expected, otherwise."""
  path = pathlib.Path(path)
  if not path.exists():
    raise FaceInputError(f"{path}: no such file (expected {kind})")
  if not path.is_file():
    raise FaceInputError(f"{path}: not a regular file (expected {kind})")
  if extensions is not None and path.suffix.lower() not in extensions:
    raise FaceInputError(f"{path}: unsupported extension {path.suffix!r} (expected {kind}: "
                         f"{' '.join(sorted(extensions))})")
  return path


@contextlib.contextmanager
def libav_messages_to_log(path):
  """FFmpeg's (libav's) messages while opening a video go to the log, not the terminal.

  libav writes them from C to file descriptor 2 ("moov atom not found" for a truncated
  .mp4, before our own one-line error says the same in words): they are captured
  (console.native_stderr_captured) and logged at INFO under the path.
  """
  try:
    with console.native_stderr_captured() as captured:
      yield
  finally:  # a video that fails to open is when FFmpeg's words matter most
    if captured.text:
      logging.getLogger(__name__).info("%s: FFmpeg says: %s", path, captured.text)


def _open_video(path) -> tuple[pathlib.Path, cv2.VideoCapture]:
  path = check_path(path, None, "a video file")
  with libav_messages_to_log(path):
    capture = cv2.VideoCapture(str(path))
  if not capture.isOpened():
    capture.release()
    raise FaceInputError(f"{path}: cannot be opened as a video (expected a readable video "
                         "file, e.g. H.264 .mp4)")
  return path, capture


def video_info(path) -> dict:
  """{'frames', 'fps', 'width', 'height'} from the container's header.

  'frames' is the header's count, which may be approximate (variable frame rate, damaged
  index) or 0 when unknown; the frames that read_video yields are the truth.
  """
  _, capture = _open_video(path)
  try:
    return {
        "frames": int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
        "fps": float(capture.get(cv2.CAP_PROP_FPS)),
        "width": int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        "height": int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
    }
  finally:
    capture.release()


def _frames(capture: cv2.VideoCapture, first: np.ndarray) -> Iterator[np.ndarray]:
  try:
    yield cv2.cvtColor(first, cv2.COLOR_BGR2RGB)
    del first  # keep only one decoded frame alive
    while True:
      ok, bgr = capture.read()
      if not ok:
        return
      yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
  finally:
    capture.release()


def read_video(path) -> Iterator[np.ndarray]:
  """A video's frames as (H, W, 3) uint8 RGB arrays, decoded one at a time.

  The path is checked and the first frame decoded at call time, so a missing, unreadable or
  empty video raises FaceInputError here rather than in the middle of a loop.
  """
  path, capture = _open_video(path)
  with libav_messages_to_log(path):
    ok, first = capture.read()
  if not ok or first is None:
    capture.release()
    raise FaceInputError(f"{path}: the video has no decodable frame (expected at least one)")
  return _frames(capture, first)


def _to_rgb_uint8(image: Image.Image) -> np.ndarray:
  """A PIL image of any common mode -> (H, W, 3) uint8 RGB."""
  if image.mode.startswith("I;16") or image.mode == "I":
    # 16-bit grey (and 32-bit ints, taken as 16-bit): map 0..65535 onto 0..255.
    values = np.clip(np.asarray(image, np.float64), 0, SIXTEEN_BIT_MAX)
    grey = np.round(values / UINT16_TO_UINT8).astype(np.uint8)
    return np.repeat(grey[:, :, None], RGB_CHANNELS, axis=2)
  if image.mode == "F":
    grey = np.clip(np.round(np.asarray(image, np.float64)), 0, UINT8_MAX).astype(np.uint8)
    return np.repeat(grey[:, :, None], RGB_CHANNELS, axis=2)
  if "A" in image.mode or "a" in image.mode or "transparency" in image.info:
    # Composite on black: transparent pixels become background, not whatever colour the
    # encoder happened to leave under them.
    rgba = np.asarray(image.convert("RGBA"), np.uint16)
    rgb = (rgba[:, :, :RGB_CHANNELS] * rgba[:, :, RGB_CHANNELS:] + UINT8_MAX // 2) // UINT8_MAX
    return rgb.astype(np.uint8)
  return np.array(image.convert("RGB"), np.uint8)


def read_image(path) -> np.ndarray:
  """An image file -> (H, W, 3) uint8 RGB, upright per its EXIF orientation.

  Grey images get 3 equal channels, alpha is composited on black, 16-bit values are scaled
  to 8 bits. Raises FaceInputError for a missing path or a file PIL cannot decode.
  """
  path = check_path(path, None, "an image file")
  try:
    with Image.open(path) as image:
      image.load()  # decode now: a truncated file fails here, inside the try
      return np.ascontiguousarray(_to_rgb_uint8(ImageOps.exif_transpose(image)))
  except (UnidentifiedImageError, OSError, SyntaxError) as e:
    raise FaceInputError(f"{path}: cannot be decoded as an image (expected a readable image "
                         f"file): {e}") from e


def is_video(path) -> bool:
  """Whether a path names a video by its extension (else a photo, for media files)."""
  return pathlib.Path(path).suffix.lower() in VIDEO_EXTENSIONS


def read_frames(path) -> Iterator[np.ndarray]:
  """A video's frames (read_video), or a photo (read_image) as a stream of one frame.

  The kind is chosen by extension; the path is checked and the first frame decoded at call
  time, so bad inputs raise FaceInputError here.
  """
  path = check_path(path, MEDIA_EXTENSIONS, MEDIA_KINDS)
  if is_video(path):
    return read_video(path)
  return iter([read_image(path)])


def media_files(folder) -> tuple[list[pathlib.Path], list[pathlib.Path]]:
  """(videos and photos, other files) under a folder and its sub-folders, in path order.

  Hidden files and folders (a name starting with ".") are left out of both.
  """
  media, others = [], []
  root = pathlib.Path(folder)
  for path in sorted(root.rglob("*")):
    if any(part.startswith(".") for part in path.relative_to(root).parts) or not path.is_file():
      continue
    (media if path.suffix.lower() in MEDIA_EXTENSIONS else others).append(path)
  return media, others
