"""Every face of a video, tracked: a stable id per face, its landmarks and its aligned crop.

  tracker = MultiFaceTracker(FaceDetector("full"), FaceMesh())
  tracker.update(frame)      one RGB frame -> list[TrackedFace] (id, landmarks, box, 5 points)
  tracker.track(frames)      RGB frames -> Iterator[faces.Frame], 112x112 aligned crops

MediaPipe's way of tracking one face, for every face at once. Each tracked face is cropped
for FaceMesh around its landmarks of the previous frame (one network a face a frame). The
detector runs on the first frame, every `detect_every` frames (so that a face walking in is
found within that many frames), on every frame where no face is tracked, and on every frame
while a tracked face is missing (so that it is picked up again as soon as it is back). Those
searches look at the whole frame and all the small-face tiles of face_models.FaceDetector;
the periodic looks, every face being tracked, at the whole frame and a share of the tiles in
turn (DEFAULT_TILE_SWEEP says why). The detections are sorted into three kinds:

  * a face already followed on this frame (its box overlaps that face's landmark box by
    SAME_FACE_IOU or more): dropped, the landmark crop is better centred than a detection's;
  * a face lost within the last `max_missing` frames: it keeps its id. Detections and missing
    faces are paired by the Hungarian algorithm (scipy's linear_sum_assignment) on the
    distance between box centres over the missing face's box side; a pair is allowed when that
    distance is at most MAX_REVIVE_DISTANCE and the box sides are within MAX_SIZE_RATIO of each
    other (a face comes back about where and at the size it left);
  * anything else: a new face, with the next id (ids count from 1 and are never reused within
    a video).

A detection's face gets its landmarks from the detection's ROI refined once around those
landmarks (FaceMesh.photo_landmarks: what tracking settles on from the next frame). A
detection whose crop FaceMesh rejects (no face present) starts nothing. Two tracks that
converge on the same face (landmark boxes overlapping by DUPLICATE_IOU or more) become one: the
older id stays. A face missing for more than `max_missing` frames is forgotten; if it comes
back later it is a new face.

A face's box is the upright bounding box of its 468 landmarks (x, y, w, h in source pixels:
forehead to chin, ear to ear less the ears); its five points are face_models.five_points, and
its crop is alignment.align on them (the ArcFace 112x112 template, as Aff-Wild2's frames).
A frame with no face yields one faces.Frame with face=None, so that no frame is dropped.
"""

import dataclasses
from typing import Iterable, Iterator

import numpy as np
from scipy import optimize

from mlt_flax import alignment
from mlt_flax import face_models
from mlt_flax import faces

# A detection overlapping a face followed on this frame this much (IoU of the detection's box
# with the landmark box) is that face: faces.TRACK_MIN_IOU, the Haar tracker's.
SAME_FACE_IOU = faces.TRACK_MIN_IOU
# Two tracks whose landmark boxes overlap this much follow the same face (distinct faces of a
# group photo overlap by less than 0.1: a face's box is its own skin, not its surroundings).
DUPLICATE_IOU = 0.5
# A missing face is picked up again by a detection whose centre is within this many of its
# box sides of where it was last seen, and whose size is within this factor of its size.
MAX_REVIVE_DISTANCE = 1.0
MAX_SIZE_RATIO = 2.0
# How long a lost face keeps its id: about a second of video at 25-30 frames/s, so that a
# head turned away or a hand in front of the face does not split one person into two ids.
DEFAULT_MAX_MISSING = 30
# The detector's period while faces are tracked: a face entering is found within a third of
# a second at 30 frames/s; tracking costs one FaceMesh call per face and frame in between.
DEFAULT_DETECT_EVERY = 10
# Those periodic looks for new faces share the detector's small-face tiles out: each runs the
# whole frame and 1/DEFAULT_TILE_SWEEP of the tiles, so a small face walking in is found within
# detect_every x 3 frames (a second at 30 frames/s), a large one within detect_every. Every
# other detection (no face tracked, or one missing) runs all the tiles. At 640x360 a look then
# costs 3 network calls instead of 7, each as dear as the whole frame's.
DEFAULT_TILE_SWEEP = 3
FIRST_FACE_ID = 1
UNMATCHED_COST = 1e9  # the assignment's cost of a forbidden pair


@dataclasses.dataclass(frozen=True)
class TrackedFace:
  """One face on one frame.

  Attributes:
    face_id: stable over the frames of a video, from 1.
    landmarks: (468, 3) FaceMesh landmarks in source pixels.
    box: (x, y, w, h), the landmarks' upright bounding box in source pixels.
    points: (5, 2) alignment points (face_models.five_points).
  """
  face_id: int
  landmarks: np.ndarray
  box: tuple[float, float, float, float]
  points: np.ndarray


@dataclasses.dataclass(eq=False)  # compared and hashed by identity: one object per face
class _Track:
  face_id: int
  box: tuple[float, float, float, float]  # (x, y, w, h) where it was last seen
  roi: face_models.Roi | None  # the crop for this frame's FaceMesh; None while missing
  missing: int = 0  # frames since it was last seen


def _landmark_box(landmarks: np.ndarray) -> tuple[float, float, float, float]:
  x0, y0 = landmarks[:, :2].min(axis=0)
  x1, y1 = landmarks[:, :2].max(axis=0)
  return (float(x0), float(y0), float(x1 - x0), float(y1 - y0))


def _revive_cost(track: _Track, detection: face_models.Detection) -> float:
  """The distance between a missing face and a detection in box sides, or UNMATCHED_COST
  when the detection is too far or too differently sized to be it."""
  x, y, w, h = track.box
  side = max(w, h)
  x0, y0, x1, y1 = detection.box
  found_side = max(x1 - x0, y1 - y0)
  distance = np.hypot((x0 + x1) / 2 - (x + w / 2), (y0 + y1) / 2 - (y + h / 2)) / side
  ratio = max(found_side / side, side / found_side)
  return float(distance) if distance <= MAX_REVIVE_DISTANCE and ratio <= MAX_SIZE_RATIO else (
      UNMATCHED_COST)


class MultiFaceTracker:
  """Follows every face of a video with a stable id (see the module docstring)."""

  def __init__(self, detector: face_models.FaceDetector, mesh: face_models.FaceMesh, *,
               detect_every: int = DEFAULT_DETECT_EVERY,
               max_missing: int = DEFAULT_MAX_MISSING,
               crop_size: int = alignment.ALIGNED_SIZE,
               tile_sweep: int = DEFAULT_TILE_SWEEP):
    """Configures the tracker.

    Args:
      detector: finds the faces to start tracks from.
      mesh: the landmark model that follows each face.
      detect_every: run the detector every N frames while faces are tracked.
      max_missing: a face lost for at most this many frames keeps its id.
      crop_size: side of the aligned crops that track() yields.
      tile_sweep: the periodic detections (every face tracked) each look at 1/tile_sweep of
        the detector's tiles, in turn; 1: all of them every time.
    """
    if detect_every < 1 or int(detect_every) != detect_every:
      raise ValueError(f"detect_every must be an integer >= 1, got {detect_every}")
    if max_missing < 0 or int(max_missing) != max_missing:
      raise ValueError(f"max_missing must be an integer >= 0, got {max_missing}")
    if crop_size < 1:
      raise ValueError(f"crop_size must be >= 1, got {crop_size}")
    if tile_sweep < 1 or int(tile_sweep) != tile_sweep:
      raise ValueError(f"tile_sweep must be an integer >= 1, got {tile_sweep}")
    self.detector = detector
    self.mesh = mesh
    self.detect_every = int(detect_every)
    self.max_missing = int(max_missing)
    self.crop_size = int(crop_size)
    self.tile_sweep = int(tile_sweep)
    self.detect_calls = 0  # instrumentation: how often the detector ran
    self.reset()

  def reset(self) -> None:
    """Forgets every face and restarts the ids (call between videos)."""
    self._tracks: list[_Track] = []
    self._next_id = FIRST_FACE_ID
    self._since_detect = 0
    self._next_tile = 0  # where the periodic looks' share of the tiles starts

  def _tile_share(self, frame) -> list[face_models.Tile]:
    """The next 1/tile_sweep of the detector's tiles for this frame's size, in turn."""
    tiles = self.detector.tiles(frame.shape[1], frame.shape[0])
    if not tiles:
      return []
    count = -(-len(tiles) // self.tile_sweep)
    start = self._next_tile % len(tiles)
    self._next_tile = start + count
    return [tiles[i % len(tiles)] for i in range(start, start + count)]

  def _detections(self, frame, found: dict, periodic: bool) -> list[face_models.Detection]:
    """This frame's detections that are not faces already followed on it; a periodic look
    (every face tracked) runs a share of the detector's tiles, any other all of them."""
    self.detect_calls += 1
    self._since_detect = 0
    boxes = [_landmark_box(lm) for lm in found.values()]
    detections = self.detector.detect(frame, self._tile_share(frame) if periodic else None)
    return [d for d in detections
            if not boxes or faces.iou(face_models.xywh(d.box), boxes).max() < SAME_FACE_IOU]

  def _revive_or_start(self, frame, detections, found: dict) -> None:
    """Missing faces picked up again by detections, then new faces from the rest; each adds
    its landmarks to found (track -> landmarks)."""
    missing = [t for t in self._tracks if t not in found]
    pairs = []
    if missing and detections:
      cost = np.array([[_revive_cost(t, d) for d in detections] for t in missing])
      rows, cols = optimize.linear_sum_assignment(cost)
      pairs = [(missing[r], detections[c]) for r, c in zip(rows, cols)
               if cost[r, c] < UNMATCHED_COST]
    paired = {id(d) for _, d in pairs}
    # New faces of one frame are numbered from the image's left to its right.
    new = sorted(((None, d) for d in detections if id(d) not in paired),
                 key=lambda pair: pair[1].box[0] + pair[1].box[2])
    for track, detection in pairs + new:
      landmarks = self.mesh.photo_landmarks(frame, detection)
      if landmarks is None:
        continue
      if track is None:
        track = _Track(self._next_id, _landmark_box(landmarks), None)
        self._next_id += 1
        self._tracks.append(track)
      found[track] = landmarks

  def _drop_duplicates(self, found: dict) -> None:
    """Of tracks that follow the same face, the oldest (smallest id) stays."""
    kept = []
    for track in sorted(found, key=lambda t: t.face_id):
      box = _landmark_box(found[track])
      if kept and faces.iou(box, [_landmark_box(found[k]) for k in kept]).max() >= DUPLICATE_IOU:
        del found[track]
        self._tracks.remove(track)
      else:
        kept.append(track)

  def update(self, frame_rgb) -> list[TrackedFace]:
    """The faces on this frame, by id."""
    frame = faces.as_rgb_frame(frame_rgb)
    found: dict[_Track, np.ndarray] = {}
    for track in self._tracks:
      if track.roi is not None:
        landmarks = self.mesh.landmarks(frame, track.roi)
        if landmarks is not None:
          found[track] = landmarks
    searching = not found or any(t not in found for t in self._tracks)  # a face is missing
    if searching or self._since_detect >= self.detect_every:
      self._revive_or_start(frame, self._detections(frame, found, not searching), found)
      self._drop_duplicates(found)
    self._since_detect += 1
    for track in list(self._tracks):
      if track in found:
        track.box, track.roi, track.missing = (_landmark_box(found[track]),
                                               face_models.roi_from_landmarks(found[track]), 0)
      else:
        track.roi, track.missing = None, track.missing + 1
        if track.missing > self.max_missing:
          self._tracks.remove(track)
    return [TrackedFace(t.face_id, found[t], t.box, face_models.five_points(found[t]))
            for t in sorted(found, key=lambda t: t.face_id)]

  def track(self, frames: Iterable[np.ndarray]) -> Iterator[faces.Frame]:
    """RGB frames -> faces.Frame records, frames numbered from 1: one per face found (by id),
    or one with face=None for a frame without a face. A generator that keeps only the tracks,
    so memory stays flat on long videos. Each call starts afresh (ids from 1)."""
    self.reset()
    for index, frame in enumerate(frames, start=1):
      frame = faces.as_rgb_frame(frame)
      shape = tuple(frame.shape[:2])
      found = self.update(frame)
      if not found:
        yield faces.Frame(index=index, face=None, box=None, source_shape=shape)
      for face in found:
        yield faces.Frame(index=index, face=alignment.align(frame, face.points, self.crop_size),
                          box=face.box, source_shape=shape, face_id=face.face_id,
                          points=face.points)
