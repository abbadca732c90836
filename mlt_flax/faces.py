"""Raw videos and photos -> model-ready face crops, streamed one frame at a time.

Aff-Wild2's `cropped_aligned/<video>/<frame>.jpg` frames are 112x112 RGB squares around the
detected face, numbered from 1, with faceless frames left out. This module makes the same kind
of crop from any video or photo, so that the model can run on footage it was not given
pre-cropped:

  faces_from_path(path, cropper)  a video or image file -> Iterator[Frame]
  FaceCropper.track(frames)       RGB frames -> Iterator[Frame], the face tracked over time
  FaceCropper.crop(image)         one RGB image -> Frame (index 1), no tracking

This is the Haar-cascade path (`predict --detector=haar`): one face, a square crop around its
box. The default path, every face with an id and a 5-point aligned crop, is
`mlt_flax.tracking.MultiFaceTracker` (BlazeFace and FaceMesh, mlt_flax/face_models.py), which
yields the same `Frame` records; faces_from_path takes either.

Reading the files (read_video, read_image, video_info, the extension sets and FaceInputError)
is `mlt_flax.media`.

A `Frame` carries its 1-based index, the crop ((crop_size, crop_size, 3) uint8 RGB, or None when
no face was found: the caller decides how to mark those frames), the face box (x, y, w, h) in
the source frame, the source frame's (height, width), and the face's id and five alignment
points (the id is 1 for the Haar path's one face; it has no points).

How a crop is made:
  1. Detection runs OpenCV's frontal-face Haar cascade (it ships in opencv-python-headless<5)
     on a grey, histogram-equalised copy whose longest side is capped at `detect_max_side`:
     a 4000x3000 photo costs the same as a 400x300 one, and the cascade's windows are coarse
     anyway. Boxes are scaled back to source coordinates.
  2. Tracking (videos): the face kept is the detection that overlaps the previous box best
     (IoU >= TRACK_MIN_IOU), so a second, larger face walking in does not steal the crop;
     otherwise the largest detection starts a new track. The box's centre and size follow an
     exponential moving average (weight `smoothing` on the past), so crops do not jitter with
     the cascade's few-pixel noise; a new track starts unsmoothed. With detect_every=N the
     cascade runs on every N-th frame and the frames in between reuse the tracked box.
  3. The crop is the square of side (1 + 2 * margin) * max(w, h) centred on the box, shifted
     down by CENTRE_SHIFT of the box height. The Haar box spans brows to upper chin and cheek
     to cheek, a tighter frame than an aligned face crop, which shows the whole face from
     forehead to chin with a thin border; margin=0.15 (a square 1.3x the box) makes the face
     fill the crop about as it fills a 112x112 Aff-Wild2 frame (forehead to chin, the top of
     the hair cut), and the small downward shift brings the chin in. Parts of the square
     outside the frame are padded black (pixels with no content rather than smeared edge
     pixels), then the square is resized to crop_size with cv2.INTER_AREA (the right filter
     for shrinking).

Nothing holds more than one decoded frame: media.read_video decodes one frame at a time and
track is a generator that keeps only the tracked box, so memory stays flat on long videos (a
600-frame video peaks at the same ~3 frames as a 150-frame one).

Bad inputs raise media.FaceInputError (also importable from here) at call time. A video
without any face is not an error: every Frame has face=None.
"""

import dataclasses
import os
from typing import Iterable, Iterator

import cv2
import numpy as np

from mlt_flax import media

# Re-exported: callers catch faces.FaceInputError around faces_from_path.
FaceInputError = media.FaceInputError

CASCADE_FILE = "haarcascade_frontalface_default.xml"

# Defaults of FaceCropper (see the module docstring for why each is what it is).
DEFAULT_CROP_SIZE = 112  # Aff-Wild2 cropped_aligned frames are 112x112
DEFAULT_MARGIN = 0.15  # per side, as a fraction of the Haar box side
DEFAULT_MIN_FACE_FRACTION = 0.1  # smallest face, as a fraction of the frame's shorter side
DEFAULT_SMOOTHING = 0.6  # EMA weight of the past box: 0 follows every detection exactly
DEFAULT_DETECT_MAX_SIDE = 400  # longest side of the image the cascade sees, in pixels

# Haar cascade settings. 1.15 between pyramid scales with 5 neighbours is the usual
# speed/recall trade-off for frontal faces; 24 px is the cascade's training window.
CASCADE_SCALE_FACTOR = 1.15
CASCADE_MIN_NEIGHBORS = 5
CASCADE_MIN_SIZE_PX = 24
# A detection continues the track when its IoU with the previous box is at least this; less
# means it is another face (or the same one after a cut) and a fresh track starts. The
# BlazeFace tracker (mlt_flax.tracking) uses the same threshold.
TRACK_MIN_IOU = 0.3
# The crop centre sits this fraction of the box height below the box centre (brings the chin in).
CENTRE_SHIFT = 0.05
PAD_VALUE = 0  # black, for the parts of the crop square that lie outside the frame
RGB_CHANNELS = media.RGB_CHANNELS
HAAR_FACE_ID = 1  # the Haar path follows one face: it is face 1 of every video

@dataclasses.dataclass
class Frame:
  """One frame's face crop.

  Attributes:
    index: 1-based frame number (Aff-Wild2's `00001.jpg` is index 1); 1 for a photo.
    face: (crop_size, crop_size, 3) uint8 RGB crop, or None when no face was found.
    box: the tracked face box (x, y, w, h) in source-frame pixels, or None with face.
    source_shape: (height, width) of the source frame.
    face_id: the face's id, stable over the frames of a video (HAAR_FACE_ID here; numbered
      from 1 by mlt_flax.tracking), or None with face.
    points: (5, 2) float (x, y) alignment points in source pixels (eye centres, nose tip,
      mouth corners; mlt_flax.face_models.five_points), or None when the path has none.
  """
  index: int
  face: np.ndarray | None
  box: tuple[float, float, float, float] | None
  source_shape: tuple[int, int]
  face_id: int | None = None
  points: np.ndarray | None = None


def iou(box, boxes) -> np.ndarray:
  """Intersection over union of one (x, y, w, h) box with each of a list of (x, y, w, h) boxes
  ((N,) float; 0 where the union is empty). The one IoU of the face modules: tracking and
  the detectors' non-maximum suppression use it too."""
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  x, y, w, h = box
  iw = np.clip(np.minimum(x + w, boxes[:, 0] + boxes[:, 2]) - np.maximum(x, boxes[:, 0]), 0, None)
  ih = np.clip(np.minimum(y + h, boxes[:, 1] + boxes[:, 3]) - np.maximum(y, boxes[:, 1]), 0, None)
  inter = iw * ih
  return inter / np.maximum(w * h + boxes[:, 2] * boxes[:, 3] - inter, 1e-12)


def _area(box) -> float:
  return box[2] * box[3]


def _load_cascade() -> cv2.CascadeClassifier:
  """The frontal-face Haar cascade from opencv-python-headless, or a RuntimeError saying why."""
  folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
  if not folder or not os.path.isfile(os.path.join(folder, CASCADE_FILE)):
    raise RuntimeError(
        f"OpenCV's {CASCADE_FILE} was not found (cv2 {cv2.__version__}, cv2.data.haarcascades="
        f"{folder!r}); face detection needs opencv-python-headless>=4.8,<5, which ships it")
  cascade = cv2.CascadeClassifier(os.path.join(folder, CASCADE_FILE))
  if cascade.empty():
    raise RuntimeError(f"OpenCV could not load {os.path.join(folder, CASCADE_FILE)}")
  return cascade


def as_rgb_frame(frame) -> np.ndarray:
  """Validates a frame: (H, W, 3) uint8 RGB as is, (H, W) grey uint8 expanded to 3 channels."""
  frame = np.asarray(frame)
  if frame.dtype != np.uint8:
    raise ValueError(f"expected a uint8 frame, got dtype {frame.dtype}")
  if frame.ndim == 2:
    return np.repeat(frame[:, :, None], RGB_CHANNELS, axis=2)
  if frame.ndim != 3 or frame.shape[2] != RGB_CHANNELS:
    raise ValueError(f"expected an (H, W, 3) RGB or (H, W) grey frame, got shape {frame.shape}")
  return frame


class FaceCropper:
  """Finds, tracks and crops the main face of RGB frames (see the module docstring)."""

  def __init__(self, crop_size: int = DEFAULT_CROP_SIZE, margin: float = DEFAULT_MARGIN,
               min_face_fraction: float = DEFAULT_MIN_FACE_FRACTION, detect_every: int = 1,
               smoothing: float = DEFAULT_SMOOTHING,
               detect_max_side: int = DEFAULT_DETECT_MAX_SIDE):
    """Configures the cropper.

    Args:
      crop_size: side of the output crops, in pixels.
      margin: border added on each side of the face box, as a fraction of its side.
      min_face_fraction: faces smaller than this fraction of the frame's shorter side are
        ignored (speeds the cascade up and drops tiny background faces).
      detect_every: run the cascade on every N-th frame of a video; frames in between reuse
        the tracked box.
      smoothing: EMA weight in [0, 1) of the previous box when a detection continues the track.
      detect_max_side: the cascade sees a copy whose longest side is at most this.
    """
    if crop_size < 1:
      raise ValueError(f"crop_size must be >= 1, got {crop_size}")
    if margin < 0:
      raise ValueError(f"margin must be >= 0, got {margin}")
    if not 0 < min_face_fraction < 1:
      raise ValueError(f"min_face_fraction must be in (0, 1), got {min_face_fraction}")
    if detect_every < 1 or int(detect_every) != detect_every:
      raise ValueError(f"detect_every must be an integer >= 1, got {detect_every}")
    if not 0 <= smoothing < 1:
      raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    if detect_max_side < CASCADE_MIN_SIZE_PX:
      raise ValueError(f"detect_max_side must be >= {CASCADE_MIN_SIZE_PX}, got {detect_max_side}")
    self.crop_size = int(crop_size)
    self.margin = float(margin)
    self.min_face_fraction = float(min_face_fraction)
    self.detect_every = int(detect_every)
    self.smoothing = float(smoothing)
    self.detect_max_side = int(detect_max_side)
    self._cascade = _load_cascade()
    # Instrumentation, read by tests and progress logs: cascade runs and the last input shape.
    self.detect_calls = 0
    self.last_detect_shape: tuple[int, int] | None = None

  def detect(self, frame_rgb) -> list[tuple[float, float, float, float]]:
    """Every face the cascade finds in an RGB frame, as (x, y, w, h) in source pixels."""
    frame = as_rgb_frame(frame_rgb)
    height, width = frame.shape[:2]
    scale = min(1.0, self.detect_max_side / max(height, width))
    if scale < 1.0:
      # Shrink in colour first: it is the cheap step on a huge frame, and INTER_AREA averages
      # pixels instead of dropping them (aliasing would confuse the cascade).
      small = cv2.resize(frame, (max(1, round(width * scale)), max(1, round(height * scale))),
                         interpolation=cv2.INTER_AREA)
    else:
      small = frame
    grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
    min_side = max(CASCADE_MIN_SIZE_PX, round(self.min_face_fraction * min(grey.shape)))
    self.detect_calls += 1
    self.last_detect_shape = grey.shape
    if min(grey.shape) < min_side:
      return []
    boxes = self._cascade.detectMultiScale(
        grey, scaleFactor=CASCADE_SCALE_FACTOR, minNeighbors=CASCADE_MIN_NEIGHBORS,
        minSize=(min_side, min_side))
    # Scale by the actual per-axis ratio: rounding made the small copy's aspect slightly off.
    sx, sy = width / grey.shape[1], height / grey.shape[0]
    return [(x * sx, y * sy, w * sx, h * sy) for x, y, w, h in np.asarray(boxes).reshape(-1, 4)]

  def crop_box(self, frame_rgb, box) -> np.ndarray:
    """The (crop_size, crop_size, 3) uint8 crop around an (x, y, w, h) box of an RGB frame."""
    frame = as_rgb_frame(frame_rgb)
    height, width = frame.shape[:2]
    x, y, w, h = box
    side = max(1, round(max(w, h) * (1 + 2 * self.margin)))
    x0 = round(x + w / 2 - side / 2)
    y0 = round(y + h / 2 + CENTRE_SHIFT * h - side / 2)
    x1, y1 = x0 + side, y0 + side
    inside = frame[max(y0, 0):min(y1, height), max(x0, 0):min(x1, width)]
    if inside.size == 0:  # the box left the frame entirely: only padding
      square = np.full((side, side, RGB_CHANNELS), PAD_VALUE, np.uint8)
    else:
      square = cv2.copyMakeBorder(
          inside, max(0, -y0), max(0, y1 - height), max(0, -x0), max(0, x1 - width),
          cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * RGB_CHANNELS)
    return cv2.resize(square, (self.crop_size, self.crop_size), interpolation=cv2.INTER_AREA)

  def _frame(self, index: int, frame: np.ndarray, box) -> Frame:
    shape = tuple(frame.shape[:2])
    if box is None:
      return Frame(index=index, face=None, box=None, source_shape=shape)
    # Round the corners, not x and w separately, so that the box never pokes out of the frame.
    x0, y0 = round(box[0]), round(box[1])
    int_box = (x0, y0, round(box[0] + box[2]) - x0, round(box[1] + box[3]) - y0)
    return Frame(index=index, face=self.crop_box(frame, box), box=int_box, source_shape=shape,
                 face_id=HAAR_FACE_ID)

  def crop(self, frame_rgb, index: int = 1) -> Frame:
    """One image -> Frame with the largest face (no tracking state is read or written)."""
    frame = as_rgb_frame(frame_rgb)
    boxes = self.detect(frame)
    return self._frame(index, frame, max(boxes, key=_area) if boxes else None)

  def _follow(self, previous, boxes):
    """The next tracked box given the previous one (or None) and this frame's detections."""
    if not boxes:
      return None
    if previous is not None:
      overlaps = iou(previous, boxes)
      best = boxes[int(overlaps.argmax())]
      if overlaps.max() >= TRACK_MIN_IOU:
        # Smooth the centre and size rather than the corners, so that a change of size does
        # not drag the centre.
        px, py, pw, ph = previous
        bx, by, bw, bh = best
        a = self.smoothing
        cx = a * (px + pw / 2) + (1 - a) * (bx + bw / 2)
        cy = a * (py + ph / 2) + (1 - a) * (by + bh / 2)
        w = a * pw + (1 - a) * bw
        h = a * ph + (1 - a) * bh
        return (cx - w / 2, cy - h / 2, w, h)
    return max(boxes, key=_area)  # a new track: the largest face, unsmoothed

  def track(self, frames: Iterable[np.ndarray]) -> Iterator[Frame]:
    """RGB frames -> one Frame per frame, indices from 1, the face tracked across frames.

    A generator: it pulls one frame, yields its Frame, and keeps nothing but the tracked box,
    so memory does not grow with the video's length. Each call starts a fresh track.
    """
    box = None
    for i, frame in enumerate(frames):
      frame = as_rgb_frame(frame)
      if i % self.detect_every == 0:
        box = self._follow(box, self.detect(frame))
      yield self._frame(i + 1, frame, box)


def faces_from_path(path, cropper=None) -> Iterator[Frame]:
  """A video or image file -> Iterator[Frame]; an image gives Frames with index 1.

  cropper: a FaceCropper (default) or a mlt_flax.tracking.MultiFaceTracker: anything whose
  track(frames) turns RGB frames into Frames. The kind of file is chosen by extension
  (media.VIDEO_EXTENSIONS, media.IMAGE_EXTENSIONS). Input errors are raised at call time (the
  first frame is decoded eagerly); the rest is streamed.
  """
  cropper = FaceCropper() if cropper is None else cropper
  return cropper.track(media.read_frames(path))
