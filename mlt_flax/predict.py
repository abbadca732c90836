"""Jitted batch inference on your own footage: per-face AU probabilities, CSVs, ABAW files.

  python -m mlt_flax.predict --workdir=RUN [--checkpoint=best] --input=PATH --output=DIR
                             [--smooth] [--abaw] [--heatmap_frames=1,40] [--timeline]
                             [--annotated_video] [--detector=blazeface|blazeface_short|haar]
  python -m mlt_flax.predict --model=EXPORTED --input=PATH --output=DIR [...]

--model runs a folder written by `python -m mlt_flax.export` with ONNX Runtime instead of a
run's checkpoint with JAX (mlt_flax/serving.py): the same outputs, no attention heatmaps,
no tfds: input.

--input is one of:
  * a video or a photo (.mp4, .mov, .avi, .jpg, .png, ...): every face is detected, tracked
    with a stable id and aligned like Aff-Wild2's training frames (mlt_flax/tracking.py;
    --detector=haar: the main face only, in a Haar-cascade box, mlt_flax/faces.py);
  * a folder of videos and photos, searched recursively: each file as above, outputs named by
    its path under the folder; a file that cannot be read is reported and skipped;
  * a folder of cropped face frames in the Aff-Wild2 layout: `cropped_aligned/<video>/*.jpg`,
    `<video>/*.jpg` folders, or one folder of `<frame>.jpg` files (frame number = file name);
    a frame number missing from the sequence is a frame with no face;
  * `tfds:SPLIT` (e.g. tfds:validation): every frame of that split of the run's dataset.
Frames with no face are kept and marked (face_found = 0), never dropped.

One compiled function serves the whole run: a fixed batch shape (the last batch padded),
sharded over all local devices, while a background thread decodes, tracks and aligns the
next batch of faces (batches run across frames, so several faces or short clips fill them).
Outputs per video, in --output (docs/faces.md has the formats):
  <video>.csv    a row per face per frame (and one row, face_found = 0, per frame without a
                 face): frame, face_found, p_<AU>..., <AU> 0/1, face_id, the face's box and
                 its five alignment points;
  abaw/<video>.txt  with --abaw, the challenge's submission file per face: <video>.txt for
                 one face, <video>_left.txt and <video>_right.txt for two (left and right by
                 where each face is on average), <video>_face<id>.txt each for more;
  <video>[_left|_right|_face<id>]_timeline.png  with --timeline, per face;
  <video>_annotated.mp4  with --annotated_video: the video with each face's box, id and AU
                 probability bars drawn in (<video>_annotated.jpg for a photo);
  per-AU cross-attention heatmaps of the frames --heatmap_frames names.
"""

if __name__ == "__main__":  # as a program: TensorFlow loads with its start-up lines
  from mlt_flax import console as _console  # kept off the terminal, before any import
  _console.quiet_native_logs()  # pulls it in (console.quiet_native_logs says why)

import csv
import dataclasses
import pathlib
import time
from typing import Iterable, Iterator

from absl import app
from absl import flags
import cv2
import jax
import numpy as np

from mlt_flax import augment
from mlt_flax import aus
from mlt_flax import checkpoints
from mlt_flax import console
from mlt_flax import face_models
from mlt_flax import faces
from mlt_flax import media
from mlt_flax import metrics
from mlt_flax import plots
from mlt_flax import runtime
from mlt_flax import tracking
from mlt_flax import xla_cpu
from mlt_flax.models import mlt

PREFETCH_BATCHES = 2  # batches decoded ahead of the device
# --detector: the face finder for videos and photos. BlazeFace full range is the default: on
# the test assets it found all 5 faces of multi_face.jpg where the short-range model found
# none (at the 0.7 score threshold), and every frame's face of WolfgangLanger_Pexels.mp4 at
# 351 frames/s with tracking and alignment, against 392 for short range (docs/faces.md).
DETECTORS = {"blazeface": "full", "blazeface_short": "short", "haar": None}
DEFAULT_DETECTOR = "blazeface"
NO_FACE_ID = 0  # face_ids of rows without an id: faceless frames, frame folders, TFDS splits
BOX_COLUMNS = ("box_x", "box_y", "box_w", "box_h")  # source pixels, (x, y) the top-left corner
POINT_COLUMNS = tuple(f"{p}_{c}" for p in ("eye_l", "eye_r", "nose", "mouth_l", "mouth_r")
                      for c in "xy")  # l, r: the image's left and right
PROGRESS_FRACTION = 1.0  # in a log or pipe: one line when done (per-video lines tell the rest)
ANNOTATED_FOURCC = "mp4v"  # MPEG-4 Part 2: OpenCV's pip wheels write it without extra codecs
MIN_FPS = 1.0  # for a video whose header gives no frame rate


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


class _Rows:
  """What Predictor.run keeps of each Frame record while its crop is being predicted."""

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


class Predictor:
  """A run's checkpoint, ready for batch inference on this process's devices."""

  def __init__(self, workdir, checkpoint: str = "best", *, run: runtime.Run | None = None):
    """Restores the checkpoint (or takes `run`, e.g. a model with fresh weights) and builds
    the one compiled predict function."""
    self.dp = runtime.DataParallel(jax.local_devices())
    self.run_ = run or runtime.load_run(workdir, checkpoint, self.dp)
    self.config, self.step, self.variables = (self.run_.config, self.run_.step,
                                              self.run_.variables)
    self.au_names = self.run_.au_names
    self.batch_size = self.dp.local_batch_size(self.config.eval.batch_size,
                                               "eval.batch_size")
    self.frame_size = self.config.data.frame_size
    model = runtime.build_model(self.config)
    self.predict = runtime.predict_fn(self.config, self.dp, model)
    image_size = self.config.model.image_size

    @jax.jit
    def attention(variables, images_uint8):
      logits, weights = mlt.cross_attention_maps(
          model, variables, augment.preprocess(images_uint8, image_size))
      return jax.nn.sigmoid(logits), weights

    self._attention = attention

  def _fit(self, crop: np.ndarray) -> np.ndarray:
    if crop.shape[:2] != (self.frame_size, self.frame_size):
      crop = cv2.resize(crop, (self.frame_size, self.frame_size), interpolation=cv2.INTER_AREA)
    return crop

  def _batches(self, frames: Iterator[faces.Frame], rows: _Rows, crops: dict,
               heatmap_frames) -> Iterator[dict]:
    """Fixed-shape batches of face crops: {'image': (B, S, S, 3), 'slot': (b,) row indices}."""
    images, slots = [], []

    def batch():
      padded = np.zeros((self.batch_size, self.frame_size, self.frame_size, 3), np.uint8)
      padded[:len(images)] = images
      return {"image": padded, "slot": np.asarray(slots, int)}

    for frame in frames:
      row = rows.add(frame)
      if frame.face is None:
        continue
      crop = self._fit(frame.face)
      if frame.index in heatmap_frames:
        crops[(frame.index, rows.ids[row])] = crop
      images.append(crop)
      slots.append(row)
      if len(images) == self.batch_size:
        yield batch()
        images, slots = [], []
    if images:
      yield batch()

  def _infer(self, batches: Iterator[dict]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(row indices, their probabilities) per batch, the device working while the host
    prepares the next batches."""
    for batch, p in runtime.infer(self.predict, self.variables, batches, self.dp):
      yield batch["slot"], p[:len(batch["slot"])]

  def run(self, frames: Iterator[faces.Frame], name: str, heatmap_frames=(),
          source=None) -> VideoPrediction:
    """Probabilities for a stream of Frame records; decoding overlaps the device's work."""
    rows, crops = _Rows(), {}
    batches = runtime.prefetch(self._batches(frames, rows, crops, heatmap_frames),
                               PREFETCH_BATCHES)
    results = list(self._infer(batches))
    probs = np.full((len(rows.frames), len(self.au_names)), np.nan, np.float32)
    for slots, p in results:
      probs[slots] = p
    return rows.prediction(name, probs, crops, None if source is None else pathlib.Path(source))

  def attention_maps(self, crops: dict) -> dict:
    """key -> (probs (L,), attention (L, h, w)) for the given crops (key -> crop)."""
    if not crops:
      return {}
    keys = sorted(crops)
    probs, weights = self._attention(self.variables, np.stack([crops[k] for k in keys]))
    side = int(round(weights.shape[-1] ** 0.5))
    weights = np.asarray(weights).reshape(len(keys), len(self.au_names), side, side)
    return {k: (np.asarray(probs[i]), weights[i]) for i, k in enumerate(keys)}


def face_finder(detector: str = DEFAULT_DETECTOR, crop_size: int = faces.DEFAULT_CROP_SIZE,
              detect_every: int = tracking.DEFAULT_DETECT_EVERY):
  """The --detector's face finder: a tracking.MultiFaceTracker (BlazeFace) or a
  faces.FaceCropper (Haar); either turns RGB frames into Frame records with .track()."""
  if detector not in DETECTORS:
    raise ValueError(f"--detector must be one of {sorted(DETECTORS)}, got {detector!r}")
  if DETECTORS[detector] is None:
    return faces.FaceCropper(crop_size=crop_size)
  return tracking.MultiFaceTracker(face_models.FaceDetector(DETECTORS[detector]),
                                   face_models.FaceMesh(), detect_every=detect_every,
                                   crop_size=crop_size)


# ------------------------------------------------------------------------------------- inputs


def _is_frame_folder(folder: pathlib.Path) -> bool:
  """A folder of face frames: it holds images, all named by their frame number."""
  stems = [p.stem for p in folder.iterdir() if p.suffix.lower() in media.IMAGE_EXTENSIONS]
  return bool(stems) and all(s.isdigit() for s in stems)


def _is_frame_layout(root: pathlib.Path) -> bool:
  """The Aff-Wild2 layout: cropped_aligned/, a frame folder, or sub-folders of frames (and
  no video or photo of its own)."""
  if (root / "cropped_aligned").is_dir() or _is_frame_folder(root):
    return True
  entries = list(root.iterdir())
  if any(p.is_file() and p.suffix.lower() in media.MEDIA_EXTENSIONS for p in entries):
    return False
  return any(d.is_dir() and _is_frame_folder(d) for d in entries)


def _folder_videos(root: pathlib.Path) -> dict[str, pathlib.Path]:
  """Video name -> folder of frame files, for the accepted folder layouts."""
  if (root / "cropped_aligned").is_dir():
    root = root / "cropped_aligned"
  has_frames = lambda d: any(p.suffix.lower() in media.IMAGE_EXTENSIONS for p in d.iterdir())
  if has_frames(root):
    return {root.name: root}
  videos = {d.name: d for d in sorted(root.iterdir()) if d.is_dir() and has_frames(d)}
  if not videos:
    raise media.FaceInputError(f"{root}: no frame images (<frame>.jpg) in it or in its "
                               "sub-folders; expected the Aff-Wild2 cropped_aligned layout")
  return videos


def _folder_frames(folder: pathlib.Path) -> Iterator[faces.Frame]:
  files = {}
  for p in folder.iterdir():
    if p.suffix.lower() in media.IMAGE_EXTENSIONS:
      if not p.stem.isdigit():
        raise media.FaceInputError(f"{p}: frame files must be named by their frame number, "
                                   "e.g. 00001.jpg")
      files[int(p.stem)] = p
  for i in range(1, max(files) + 1):
    path = files.get(i)
    crop = media.read_image(path) if path is not None else None
    yield faces.Frame(index=i, face=crop, box=None,
                      source_shape=crop.shape[:2] if crop is not None else (0, 0))


def _media_inputs(root: pathlib.Path) -> tuple[dict[str, pathlib.Path], list[pathlib.Path]]:
  """(output name -> video or photo, the files that are neither) under a folder.

  A file's name is its path under the folder without the extension ('a/clip' for
  a/clip.mp4); two files that differ only by extension keep it ('clip_mp4', 'clip_jpg').
  """
  files, others = media.media_files(root)
  if not files:
    raise media.FaceInputError(f"{root}: no video, photo or frame image in it or its "
                               f"sub-folders (expected {media.MEDIA_KINDS}s)")
  stems = [p.relative_to(root).with_suffix("").as_posix() for p in files]
  names = {}
  for stem, path in zip(stems, files):
    clash = stems.count(stem) > 1
    names[f"{stem}_{path.suffix[1:].lower()}" if clash else stem] = path
  return names, others


def _frame_count(path: pathlib.Path) -> int:
  """Frames a file holds by its header (1 for a photo, 0 when unreadable): for progress."""
  if not media.is_video(path):
    return 1
  try:
    return max(media.video_info(path)["frames"], 1)
  except media.FaceInputError:
    return 0


def _counted(frames: Iterable[np.ndarray], progress: console.Progress, start: int,
             end: int) -> Iterator[np.ndarray]:
  """The frames, passed on; progress told of each, short of this video's share (end, which
  the caller reports when the video is done: a header's frame count can be off)."""
  for i, frame in enumerate(frames, start=1):
    yield frame
    progress(min(start + i, end - 1))


# ------------------------------------------------------------------------------------ outputs


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


def write_outputs(pred: VideoPrediction, out: pathlib.Path, au_names, *, smooth_window: int,
                  threshold: float, abaw: bool) -> dict:
  """The per-frame CSV (and the ABAW files); returns a small summary of the video.

  Both hold the probabilities a challenge submission holds (`metrics.challenge_probs`), per
  face: frames a face is not on take its nearest frame's prediction, then (smooth_window > 1)
  the moving mean over frame numbers. The CSV leaves the probabilities of a faceless row
  blank (face_found = 0); each ABAW file, like the challenge, has a line for every frame.
  """
  series = face_series(pred, smooth_window)
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
                    *(int(p >= threshold) for p in probs[i]), *where])
      else:
        w.writerow([frame, 0, *([""] * 2 * len(au_names)), *where])
  if abaw:
    for s in series:
      _write_abaw(s, f"{pred.name}{s.suffix}", out / "abaw", au_names, threshold)
  return {"video": pred.name, "frames": int(len(series[0].frames)),
          "frames_with_face": int(len(np.unique(pred.frames[pred.face_found]))),
          "faces": int(sum(s.found.any() for s in series))}


def _write_abaw(s: FaceSeries, name: str, out: pathlib.Path, au_names, threshold):
  """One face's txt: the challenge header, then a 0/1 line for EVERY frame 1..N."""
  challenge = aus.names(aus.AFFWILD2)
  missing = [n for n in challenge if n not in au_names]
  if missing:
    raise ValueError(f"--abaw needs the 12 Aff-Wild2 AUs; this model lacks {missing}")
  cols = [list(au_names).index(n) for n in challenge]
  if not np.array_equal(s.frames, np.arange(1, len(s.frames) + 1)):
    raise ValueError(f"{name}: frames must be numbered 1..N for the ABAW format")
  path = out / f"{name}.txt"
  path.parent.mkdir(parents=True, exist_ok=True)
  lines = [",".join(challenge)] + [",".join(str(int(v >= threshold)) for v in row)
                                   for row in s.submission[:, cols]]
  path.write_text("\n".join(lines) + "\n")


# Drawing of --annotated_video: one colour per face id (BGR, cycled), and the bar panel.
ANNOTATION_COLOURS = ((60, 180, 75), (230, 50, 25), (25, 225, 255), (200, 130, 0),
                      (240, 50, 230), (245, 130, 48), (128, 128, 0), (180, 30, 145))
BAR_ROW_PX, BAR_WIDTH_PX, LABEL_WIDTH_PX = 12, 60, 40  # one AU per row: name, then its bar
FONT, FONT_SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.35
PANEL_COLOUR = (40, 40, 40)  # dark grey behind the bars: white names read on any frame


def _draw_face(image: np.ndarray, face_id: int, box, probs, au_names, threshold) -> None:
  """One face's box, id and AU probability bars, drawn into a BGR image in place."""
  colour = ANNOTATION_COLOURS[(max(face_id, 1) - 1) % len(ANNOTATION_COLOURS)]
  x, y, w, h = (int(round(v)) for v in box)
  cv2.rectangle(image, (x, y), (x + w, y + h), colour, 2)
  cv2.putText(image, f"face {face_id}" if face_id else "face", (x, max(y - 5, 10)), FONT,
              2 * FONT_SCALE, colour, 1, cv2.LINE_AA)
  panel = LABEL_WIDTH_PX + BAR_WIDTH_PX
  px = x + w + 5 if x + w + 5 + panel <= image.shape[1] else max(x - 5 - panel, 0)
  cv2.rectangle(image, (px, y), (px + panel, y + len(au_names) * BAR_ROW_PX), PANEL_COLOUR, -1)
  for i, (name, p) in enumerate(zip(au_names, probs)):
    top = y + i * BAR_ROW_PX
    cv2.putText(image, name, (px, top + BAR_ROW_PX - 3), FONT, FONT_SCALE, (255, 255, 255), 1,
                cv2.LINE_AA)
    bar = (px + LABEL_WIDTH_PX, top + 2)
    cv2.rectangle(image, bar, (bar[0] + BAR_WIDTH_PX, top + BAR_ROW_PX - 2), (90, 90, 90), 1)
    cv2.rectangle(image, bar, (bar[0] + int(round(p * BAR_WIDTH_PX)), top + BAR_ROW_PX - 2),
                  colour if p >= threshold else (160, 160, 160), -1)


def write_annotated(pred: VideoPrediction, out: pathlib.Path, au_names, *, smooth_window: int,
                    threshold: float) -> pathlib.Path:
  """The source video (or photo) with each face's box, id and AU bars drawn in.

  The source is read a second time, one frame at a time, and written as it is read, so memory
  does not grow with the video. The bars show the CSV's probabilities (filled in the face's
  colour at or above the threshold). Returns the file written: <name>_annotated.mp4 (MPEG-4,
  the source's frame rate and size) for a video, <name>_annotated.jpg for a photo.
  """
  probs = row_probs(pred, face_series(pred, smooth_window))
  rows_of = {}
  for i in np.flatnonzero(pred.face_found):
    rows_of.setdefault(int(pred.frames[i]), []).append(i)

  def drawn(index, rgb):
    image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    for i in rows_of.get(index, ()):
      if not np.isnan(pred.boxes[i]).any():
        _draw_face(image, int(pred.face_ids[i]), pred.boxes[i], probs[i], au_names, threshold)
    return image

  if not media.is_video(pred.source):
    path = out / f"{pred.name}_annotated.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), drawn(1, media.read_image(pred.source)))
    return path
  info = media.video_info(pred.source)
  path = out / f"{pred.name}_annotated.mp4"
  path.parent.mkdir(parents=True, exist_ok=True)
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*ANNOTATED_FOURCC),
                           max(info["fps"], MIN_FPS), (info["width"], info["height"]))
  if not writer.isOpened():
    raise ValueError(f"{path}: OpenCV cannot write an {ANNOTATED_FOURCC} video here")
  try:
    for index, rgb in enumerate(media.read_video(pred.source), start=1):
      writer.write(drawn(index, rgb))
  finally:
    writer.release()
  return path


# ------------------------------------------------------------------------------------ the run


def _predictions_of_media(predictor, inputs: dict, finder, heatmap_frames, *, single: bool,
                          skipped: list) -> Iterator[VideoPrediction]:
  """Each video or photo through the face finder and the predictor, a progress line over
  all their frames. single: a bad file is an error; else it is reported, listed in skipped
  and passed over."""
  counts = {name: _frame_count(path) for name, path in inputs.items()}
  progress = console.Progress(sum(counts.values()), label="frame", fraction=PROGRESS_FRACTION)
  start = 0
  for k, (name, path) in enumerate(inputs.items(), start=1):
    end = start + counts[name]
    try:
      frames = media.read_frames(path)  # a bad file raises here, before any frame is used
    except media.FaceInputError as e:
      if single:
        raise
      progress.interrupt()
      print(f"skipped {path}: {e}")
      skipped.append((path, str(e)))
      start = end
      continue
    progress.note(f"{name} ({k}/{len(inputs)})")
    t0 = time.perf_counter()
    pred = predictor.run(finder.track(_counted(frames, progress, start, end)), name,
                         heatmap_frames, source=path)
    pred.seconds = time.perf_counter() - t0
    progress(end)
    if end < progress.total:
      progress.interrupt()  # the video's summary line goes below a line that is not done
    start = end
    yield pred


def predict(workdir, input_path: str, output, *, checkpoint="best", model=None,
            **options) -> list[dict]:
  """Runs a checkpoint on `input_path`; writes CSVs/ABAW/plots into `output`; returns summaries.

  model: an export folder (mlt_flax.export) to run with ONNX Runtime instead (workdir unused).
  options: predict_with's.
  """
  detector = options.get("detector", DEFAULT_DETECTOR)
  if detector not in DETECTORS:
    raise ValueError(f"--detector must be one of {sorted(DETECTORS)}, got {detector!r}")
  if model is not None:
    if input_path.startswith("tfds:"):
      raise ValueError(f"--input={input_path}: a TFDS split needs the run (--workdir); "
                       "--model takes videos, photos and frame folders")
    from mlt_flax import serving  # pylint: disable=g-import-not-at-top  (ONNX Runtime, on demand)
    predictor = serving.OnnxPredictor(model)
  else:
    predictor = Predictor(workdir, checkpoint)
  return predict_with(predictor, input_path, output, **options)


def predict_with(predictor: Predictor, input_path: str, output, *, smooth=False, abaw=False,
                 heatmap_frames=(), timeline=False, detector=DEFAULT_DETECTOR,
                 detect_every=tracking.DEFAULT_DETECT_EVERY,
                 annotated_video=False) -> list[dict]:
  """predict() with a Predictor already built: several inputs can share its compiled function.

  detector, detect_every: the face finder for videos and photos (face_finder).
  annotated_video: also draw the faces and their AUs into a copy of each video and photo.
  """
  out = pathlib.Path(output)
  config, names = predictor.config, predictor.au_names
  window = config.eval.smoothing_window if smooth else 1
  threshold = config.eval.threshold
  skipped, ignored = [], []
  t0 = time.perf_counter()
  if input_path.startswith("tfds:"):
    split = input_path[len("tfds:"):]
    # Every labelled frame of the split, at full frame rate, faceless ones included (marked):
    # the frames a challenge submission has a line for.
    p = runtime.predict_split(predictor.run_, split, predictor.dp, predict=predictor.predict,
                              frame_stride=1, faceless=True)
    streams = []
    for v in np.unique(p["video"].astype(str)):
      rows = p["video"].astype(str) == v
      probs = np.where(p["face"][rows, None], p["probs"][rows], np.nan).astype(np.float32)
      streams.append(VideoPrediction.one_face(v, p["frame"][rows], p["face"][rows], probs))
    predictions = iter(streams)
  else:
    path = pathlib.Path(input_path)
    if path.is_dir() and _is_frame_layout(path):
      videos = _folder_videos(path)
      predictions = (predictor.run(_folder_frames(d), name, heatmap_frames)
                     for name, d in videos.items())
    else:
      if path.is_dir():
        inputs, ignored = _media_inputs(path)
      else:
        media.check_path(path, media.MEDIA_EXTENSIONS, media.MEDIA_KINDS)
        inputs = {path.stem: path}
      finder = face_finder(detector, predictor.frame_size, detect_every)
      predictions = _predictions_of_media(predictor, inputs, finder, heatmap_frames,
                                          single=not path.is_dir(), skipped=skipped)
  summaries, total = [], 0
  for pred in predictions:
    s = write_outputs(pred, out, names, smooth_window=window, threshold=threshold, abaw=abaw)
    total += s["frames"]
    if not pred.face_found.any():
      s["warning"] = "no face found in any frame"
      print(f"warning: {pred.name}: no face found in any frame; every row has face_found=0")
    series = face_series(pred, window)
    if timeline:
      for f in series:
        plots.au_timeline(f.frames, np.nan_to_num(f.probs), f.found, names,
                          out / f"{pred.name}{f.suffix}_timeline.png",
                          title=f"{pred.name}{f.suffix}: AU probabilities per frame")
    suffix = {f.face_id: f.suffix for f in series}
    for (frame, face_id), (probs, att) in predictor.attention_maps(pred.crops).items():
      name = f"{pred.name}{suffix.get(face_id, '')}"
      plots.attention_heatmaps(pred.crops[(frame, face_id)], att, probs, names,
                               out / f"{name}_frame{frame:05d}_attention.png",
                               title=f"{name}, frame {frame}: cross-attention per AU")
    if annotated_video and pred.source is not None:
      s["annotated"] = str(write_annotated(pred, out, names, smooth_window=window,
                                           threshold=threshold))
    if pred.seconds is not None:
      print(f"{pred.name}: {s['frames']} frames, {s['faces']} face(s) found, "
            f"{s['frames_with_face']} frames with a face, "
            f"{s['frames'] / max(pred.seconds, 1e-9):.1f} frames/s")
    summaries.append(s)
  elapsed = time.perf_counter() - t0
  print(f"predicted {total} frames of {len(summaries)} video(s) in {elapsed:.1f}s "
        f"({total / max(elapsed, 1e-9):.1f} frames/s, checkpoint step {predictor.step}); "
        f"outputs in {out}")
  if skipped:
    print(f"skipped {len(skipped)} unreadable file(s): " +
          "; ".join(f"{p} ({why})" for p, why in skipped))
  if ignored:
    print(f"ignored {len(ignored)} file(s) that are not videos or photos: " +
          ", ".join(str(p) for p in ignored))
  return summaries


FLAGS = flags.FLAGS


def define_flags():
  """The CLI's flags (defined only when run as a program, so the module imports cleanly)."""
  flags.DEFINE_string("workdir", None, "The training run whose checkpoint to use.")
  flags.DEFINE_string("model", None, "Instead of --workdir: a folder written by "
                      "`python -m mlt_flax.export`, run with ONNX Runtime.")
  flags.mark_flags_as_mutual_exclusive(["workdir", "model"], required=True)
  flags.DEFINE_string("checkpoint", "best", "'best' (by validation mean F1), 'latest' or a "
                      "step number.")
  flags.DEFINE_string("input", None, "A video or photo, a folder of them (searched "
                      "recursively), a folder of face frames (cropped_aligned layout), or "
                      "tfds:SPLIT.", required=True)
  flags.DEFINE_string("output", None, "Output folder.", required=True)
  flags.DEFINE_bool("smooth", False, "Smooth probabilities within each video (the config's "
                    "eval.smoothing_window).")
  flags.DEFINE_bool("abaw", False, "Also write the ABAW3 submission format (abaw/<video>.txt, "
                    "one file per face).")
  flags.DEFINE_list("heatmap_frames", [], "Frame numbers to draw attention heatmaps for.")
  flags.DEFINE_bool("timeline", False, "Draw an AU timeline per face of each video.")
  flags.DEFINE_bool("annotated_video", False, "Also write <video>_annotated.mp4: the video with "
                    "each face's box, id and AU probability bars drawn in.")
  flags.DEFINE_enum("detector", DEFAULT_DETECTOR, sorted(DETECTORS), "Face finder for videos "
                    "and photos: blazeface (every face, tracked, 5-point aligned; BlazeFace "
                    "full range), blazeface_short (the short-range model: close faces only), "
                    "haar (the main face only, OpenCV's Haar cascade, no alignment).")
  flags.DEFINE_integer("detect_every", tracking.DEFAULT_DETECT_EVERY, "With blazeface: run "
                       "the detector every N frames (faces in between are followed by their "
                       "landmarks); a face walking in is found within N frames.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  xla_cpu.apply_defaults()  # before anything starts JAX's backend
  console.setup(FLAGS.output)
  try:
    predict(FLAGS.workdir, FLAGS.input, FLAGS.output, checkpoint=FLAGS.checkpoint,
            smooth=FLAGS.smooth, abaw=FLAGS.abaw, timeline=FLAGS.timeline,
            heatmap_frames={int(f) for f in FLAGS.heatmap_frames}, model=FLAGS.model,
            detector=FLAGS.detector, detect_every=FLAGS.detect_every,
            annotated_video=FLAGS.annotated_video)
  except (FileNotFoundError, ValueError, checkpoints.CheckpointError) as e:
    console.exit_with_error(e)


if __name__ == "__main__":
  define_flags()
  app.run(main)
