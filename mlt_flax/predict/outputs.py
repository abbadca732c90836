"""What predict writes: the records a backend returns, each face's series over the video,
the per-frame CSV and the ABAW files, and the decision rule (thresholds and window) they use.

  VideoPrediction   a row per face per frame (and one per faceless frame) of one video
  Decisions         per-AU thresholds and the smoothing window: 'tuned' (the set evaluate
                    scored and ships) or 'fixed' (config.eval.threshold)
  face_series       each face over every frame, faceless frames filled as the challenge does
  write_outputs     <video>.csv and abaw/<video>[_left|_right|_face<id>].txt
"""

import csv
import dataclasses
import json
import pathlib

import numpy as np

from mlt_flax import aus
from mlt_flax import faces
from mlt_flax import metrics

NO_FACE_ID = 0  # face_ids of rows without an id: faceless frames, frame folders, TFDS splits
BOX_COLUMNS = ("box_x", "box_y", "box_w", "box_h")  # source pixels, (x, y) the top-left corner
POINT_COLUMNS = tuple(f"{p}_{c}" for p in ("eye_l", "eye_r", "nose", "mouth_l", "mouth_r")
                      for c in "xy")  # l, r: the image's left and right
THRESHOLD_MODES = ("tuned", "fixed")  # --thresholds
DECISIONS_FILE = "thresholds.json"  # in --output: the decision rule the outputs used


@dataclasses.dataclass
class VideoPrediction:
  """Everything predicted for one video: a row per face per frame, and one row per frame
  without a face, by frame (1-based) then face id.

  Attributes:
    name: the outputs' base name.
    frames: (N,) int frame numbers.
    face_found: (N,) bool.
    probs: (N, L) float32; NaN where no face.
    crops: (frame, face_id) -> (S, S, 3) uint8, only for frames asked for heatmaps.
    face_ids: (N,) int, NO_FACE_ID for a row without an id.
    boxes: (N, 4) float (x, y, w, h), NaN where unknown.
    points: (N, 5, 2) float alignment points, NaN where unknown.
    source: the video or photo it came from, or None (frame folders, TFDS splits).
    seconds: how long finding the faces and predicting took (videos and photos), or None.
  """
  name: str
  frames: np.ndarray
  face_found: np.ndarray
  probs: np.ndarray
  crops: dict
  face_ids: np.ndarray
  boxes: np.ndarray
  points: np.ndarray
  source: pathlib.Path | None = None
  seconds: float | None = None

  @classmethod
  def one_face(cls, name, frames, face_found, probs) -> "VideoPrediction":
    """A prediction with no ids, boxes or points (frame folders and TFDS splits)."""
    n = len(frames)
    return cls(name, np.asarray(frames, int), np.asarray(face_found, bool), probs, {},
               np.full(n, NO_FACE_ID, int), np.full((n, 4), np.nan), np.full((n, 5, 2), np.nan))


class Rows:
  """What Backend.run keeps of each Frame record while its crop is being predicted."""

  def __init__(self):
    self.frames, self.found, self.ids, self.boxes, self.points = [], [], [], [], []

  def add(self, frame: faces.Frame) -> int:
    """Appends the record's row; returns its index."""
    self.frames.append(frame.index)
    self.found.append(frame.face is not None)
    self.ids.append(NO_FACE_ID if frame.face_id is None else frame.face_id)
    self.boxes.append(np.nan if frame.box is None else frame.box)
    self.points.append(np.nan if frame.points is None else frame.points)
    return len(self.frames) - 1

  def prediction(self, name, probs, crops, source) -> VideoPrediction:
    n = len(self.frames)
    boxes = np.array([np.broadcast_to(b, (4,)) for b in self.boxes], float).reshape(n, 4)
    points = np.array([np.broadcast_to(p, (5, 2)) for p in self.points], float).reshape(n, 5, 2)
    return VideoPrediction(name, np.asarray(self.frames, int), np.asarray(self.found, bool),
                           probs, crops, np.asarray(self.ids, int), boxes, points, source)


@dataclasses.dataclass(frozen=True)
class Decisions:
  """How probabilities become the 0/1 columns: thresholds per AU and the smoothing window.

  Attributes:
    mode: 'tuned' (the shipped set: what evaluate scored) or 'fixed' (config.eval.threshold).
    thresholds: (L,) float, in the model's AU order.
    window: the centred moving mean's length over frame numbers (1: none).
    source: where they come from, in words (for the terminal and DECISIONS_FILE).
  """
  mode: str
  thresholds: np.ndarray
  window: int
  source: str

  def describe(self) -> str:
    values = np.unique(self.thresholds)
    shown = f"{values[0]:g}" if len(values) == 1 else (
        f"per AU, {values.min():.2f}..{values.max():.2f}")
    return f"thresholds {self.mode} ({shown}; window {self.window}): {self.source}"

  def write(self, out: pathlib.Path, au_names) -> pathlib.Path:
    path = out / DECISIONS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "mode": self.mode, "window": self.window, "source": self.source,
        "thresholds": {n: float(t) for n, t in zip(au_names, self.thresholds)}}, indent=1))
    return path


def choose_decisions(mode: str, shipped: dict | None, au_names, *, default_threshold: float,
                     config_window: int, smooth: bool, where: str) -> tuple[Decisions, str | None]:
  """The decision rule of --thresholds=mode, and a warning line (or None).

  tuned: the shipped set's per-AU thresholds and window (AUs it lacks keep the default);
    without a shipped set, falls back to fixed with a warning.
  fixed: default_threshold for every AU, window config_window with smooth, else 1.
  where: what holds the shipped set (a report.json, an export's metadata.json), for messages.
  """
  if mode not in THRESHOLD_MODES:
    raise ValueError(f"--thresholds={mode}: expected one of {', '.join(THRESHOLD_MODES)}")
  warning = None
  if mode == "tuned" and shipped is None:
    warning = (f"warning: --thresholds=tuned but {where} holds no shipped set (run "
               f"`python -m mlt_flax.evaluate` first); using the fixed threshold "
               f"{default_threshold:g}")
    mode = "fixed"
  if mode == "fixed":
    window = config_window if smooth else 1
    return Decisions("fixed", np.full(len(au_names), float(default_threshold)), window,
                     "config.eval.threshold" + (", config.eval.smoothing_window" if smooth
                                                else "")), warning
  try:
    tuned, window = shipped["thresholds"], int(shipped["window"])
    unknown = sorted(set(tuned) - set(au_names))
    thresholds = np.array([float(tuned.get(n, default_threshold)) for n in au_names])
  except (KeyError, TypeError, ValueError) as e:
    raise ValueError(f"{where}: 'shipped' is not a shipped threshold set "
                     f"({type(e).__name__}: {e}); expected {{'thresholds': {{AU: float}}, "
                     "'window': int, ...}") from e
  if unknown or window < 1:
    raise ValueError(f"{where}: the shipped set names AUs this model lacks ({unknown})"
                     if unknown else f"{where}: shipped window {window}; expected >= 1")
  kept = [n for n in au_names if n not in tuned]
  source = (f"shipped by {where} (tuned on {shipped.get('tuned_on', '?')}, checkpoint step "
            f"{shipped.get('checkpoint_step', '?')})" +
            (f"; {', '.join(kept)} at the default {default_threshold:g}" if kept else ""))
  return Decisions("tuned", thresholds, window, source), warning


@dataclasses.dataclass
class FaceSeries:
  """One face of a video over every frame of the video (what its ABAW file and timeline
  show).

  Attributes:
    face_id: its id (NO_FACE_ID: the video's only face has none, or there is no face).
    suffix: what its output names add to the video's: "" for a video's only face, "_left" and
      "_right" for two faces, "_face<id>" each for more.
    frames: (F,) every frame number of the video, in order.
    found: (F,) bool, frames this face is on.
    probs: (F, L) its probabilities, NaN where it is not found.
    submission: (F, L) what a challenge submission holds (metrics.challenge_probs).
  """
  face_id: int
  suffix: str
  frames: np.ndarray
  found: np.ndarray
  probs: np.ndarray
  submission: np.ndarray


def face_series(pred: VideoPrediction, smooth_window: int) -> list[FaceSeries]:
  """Each face of a video over all its frames, by id; one series (found nowhere) for a video
  without a face."""
  frames = np.unique(pred.frames)
  ids = sorted(set(pred.face_ids[pred.face_found].tolist()))
  if len(ids) == 2:
    mean_x = {i: np.nanmean(pred.boxes[pred.face_ids == i, 0] +
                            pred.boxes[pred.face_ids == i, 2] / 2) for i in ids}
    left = min(ids, key=lambda i: mean_x[i])
    suffixes = {i: "_left" if i == left else "_right" for i in ids}
  else:
    suffixes = {i: "" if len(ids) == 1 else f"_face{i}" for i in ids}
  series = []
  for face_id in ids or [NO_FACE_ID]:
    rows = pred.face_found & (pred.face_ids == face_id)
    probs = np.full((len(frames), pred.probs.shape[1]), np.nan, np.float32)
    probs[np.searchsorted(frames, pred.frames[rows])] = pred.probs[rows]
    found = ~np.isnan(probs[:, 0])
    submission = metrics.challenge_probs(np.nan_to_num(probs), found,
                                         np.zeros(len(frames), int), frames, smooth_window)
    series.append(FaceSeries(face_id, suffixes.get(face_id, ""), frames, found, probs,
                             submission))
  return series


def row_probs(pred: VideoPrediction, series: list[FaceSeries]) -> np.ndarray:
  """(N, L): each face row's submission probabilities (NaN on rows without a face)."""
  out = np.full(pred.probs.shape, np.nan, np.float32)
  for s in series:
    rows = np.flatnonzero(pred.face_found & (pred.face_ids == s.face_id))
    out[rows] = s.submission[np.searchsorted(s.frames, pred.frames[rows])]
  return out


def _number(v: float) -> str:
  return "" if np.isnan(v) else f"{v:.1f}"


def write_outputs(pred: VideoPrediction, series: list[FaceSeries], out: pathlib.Path, au_names,
                  decisions: Decisions, *, abaw: bool) -> dict:
  """The per-frame CSV (and the ABAW files); returns a small summary of the video.

  Both hold the probabilities a challenge submission holds (`metrics.challenge_probs`), per
  face: frames a face is not on take its nearest frame's prediction, then (smooth_window > 1)
  the moving mean over frame numbers (decisions.window); the 0/1 columns are those at or
  above decisions.thresholds. The CSV leaves the probabilities of a faceless row blank
  (face_found = 0); each ABAW file, like the challenge, has a line for every frame.
  series: face_series(pred, decisions.window).
  """
  probs = row_probs(pred, series)
  csv_path = out / f"{pred.name}.csv"
  csv_path.parent.mkdir(parents=True, exist_ok=True)
  with open(csv_path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["frame", "face_found", *(f"p_{n}" for n in au_names), *au_names, "face_id",
                *BOX_COLUMNS, *POINT_COLUMNS])
    for i, frame in enumerate(pred.frames):
      where = [pred.face_ids[i] or "", *map(_number, pred.boxes[i]),
               *map(_number, pred.points[i].ravel())]
      if pred.face_found[i]:
        w.writerow([frame, 1, *(f"{p:.4f}" for p in probs[i]),
                    *(probs[i] >= decisions.thresholds).astype(int), *where])
      else:
        w.writerow([frame, 0, *([""] * 2 * len(au_names)), *where])
  if abaw:
    for s in series:
      _write_abaw(s, f"{pred.name}{s.suffix}", out / "abaw", au_names, decisions.thresholds)
  return {"video": pred.name, "frames": int(len(series[0].frames)),
          "frames_with_face": int(len(np.unique(pred.frames[pred.face_found]))),
          "faces": int(sum(s.found.any() for s in series))}


def _write_abaw(s: FaceSeries, name: str, out: pathlib.Path, au_names, thresholds):
  """One face's txt: the challenge header, then a 0/1 line for EVERY frame 1..N
  (thresholds: (L,) in au_names order)."""
  challenge = aus.names(aus.AFFWILD2)
  missing = [n for n in challenge if n not in au_names]
  if missing:
    raise ValueError(f"--abaw needs the 12 Aff-Wild2 AUs; this model lacks {missing}")
  cols = [list(au_names).index(n) for n in challenge]
  if not np.array_equal(s.frames, np.arange(1, len(s.frames) + 1)):
    raise ValueError(f"{name}: frames must be numbered 1..N for the ABAW format")
  path = out / f"{name}.txt"
  path.parent.mkdir(parents=True, exist_ok=True)
  decided = (s.submission[:, cols] >= np.asarray(thresholds)[cols]).astype(int)
  lines = [",".join(challenge)] + [",".join(map(str, row)) for row in decided]
  path.write_text("\n".join(lines) + "\n")


