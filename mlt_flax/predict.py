"""Jitted batch inference on your own footage: per-frame AU probabilities, CSVs, ABAW files.

  python -m mlt_flax.predict --workdir=RUN [--checkpoint=best] --input=PATH --output=DIR
                             [--smooth] [--abaw] [--heatmap_frames=1,40] [--timeline]

--input is one of:
  * a raw video or photo (.mp4, .mov, .avi, .jpg, .png, ...): the face is detected in each
    frame, tracked, and cropped like Aff-Wild2's training frames (mlt_flax/faces.py);
  * a folder of cropped face frames in the Aff-Wild2 layout: `cropped_aligned/<video>/*.jpg`,
    `<video>/*.jpg` folders, or one folder of `<frame>.jpg` files (frame number = file name);
    a frame number missing from the sequence is a frame with no face;
  * `tfds:SPLIT` (e.g. tfds:validation): every frame of that split of the run's dataset.
Frames with no face are kept and marked (face_found = 0), never dropped.

One compiled function serves the whole run: a fixed batch shape (the last batch padded),
sharded over all local devices, while a background thread decodes and crops the next batch.
Outputs per video: <video>.csv (frame, face_found, p_<AU>..., <AU> 0/1 after smoothing if
asked), with --abaw the challenge's submission file abaw/<video>.txt (header, one line for
every frame; faceless frames take the prediction of their nearest frame with a face), with
--timeline an AU timeline PNG, with --heatmap_frames per-AU cross-attention heatmaps.
"""

import csv
import dataclasses
import pathlib
import queue
import sys
import threading
import time
from typing import Iterator

from absl import app
from absl import flags
import cv2
import jax
import numpy as np

from mlt_flax import augment
from mlt_flax import aus
from mlt_flax import checkpoints
from mlt_flax import evaluate
from mlt_flax import faces
from mlt_flax import metrics
from mlt_flax import models
from mlt_flax import plots
from mlt_flax import train
from mlt_flax import xla_cpu

VIDEO_EXTENSIONS = faces.VIDEO_EXTENSIONS
IMAGE_EXTENSIONS = faces.IMAGE_EXTENSIONS
PREFETCH_BATCHES = 2  # batches decoded ahead of the device


@dataclasses.dataclass
class VideoPrediction:
  """Everything predicted for one video (frames in order, 1-based)."""
  name: str
  frames: np.ndarray  # (N,) int
  face_found: np.ndarray  # (N,) bool
  probs: np.ndarray  # (N, L) float32; NaN where no face
  crops: dict  # frame -> (S, S, 3) uint8, only for frames asked for heatmaps


class Predictor:
  """A run's checkpoint, ready for batch inference on local devices."""

  def __init__(self, workdir, checkpoint: str = "best"):
    self.config = evaluate.load_config(workdir)
    self.au_names = aus.names(aus.label_space(self.config.data.label_space))
    self.dp = train.DataParallel(jax.local_devices())
    self.variables, self.step = evaluate.restore_variables(workdir, self.config, checkpoint,
                                                           self.dp)
    self.batch_size = self.dp.local_batch_size(self.config.eval.batch_size,
                                               "eval.batch_size")
    self.frame_size = self.config.data.frame_size
    model = models.build_model(self.config.model, len(self.au_names))
    self._predict = self.dp.map(
        lambda v, b: train.predict_step(v, b, model=model, config=self.config),
        out_specs=jax.P(train.AXIS), donate_state=False)

    @jax.jit
    def attention(variables, images_uint8):
      x = augment.preprocess(images_uint8, self.config.model.image_size)
      logits, state = model.apply(variables, x, train=False, mutable=["intermediates"])
      decoder = state["intermediates"]["label_decoder"]
      last = f"layer{self.config.model.num_decoder_layers - 1}_cross_attention"
      (weights,) = decoder[last]["attention"]["attention_weights"]  # (B, heads, L, n_x)
      return jax.nn.sigmoid(logits), weights.mean(axis=1)

    self._attention = attention

  def _fit(self, crop: np.ndarray) -> np.ndarray:
    if crop.shape[:2] != (self.frame_size, self.frame_size):
      crop = cv2.resize(crop, (self.frame_size, self.frame_size), interpolation=cv2.INTER_AREA)
    return crop

  def run(self, frames: Iterator[faces.Frame], name: str,
          heatmap_frames=()) -> VideoPrediction:
    """Probabilities for a stream of frames; decoding overlaps the device's work."""
    jobs: queue.Queue = queue.Queue(maxsize=PREFETCH_BATCHES)
    index, found, crops = [], [], {}

    def produce():
      try:
        batch, slots = [], []
        for frame in frames:
          index.append(frame.index)
          found.append(frame.face is not None)
          if frame.face is None:
            continue
          crop = self._fit(frame.face)
          if frame.index in heatmap_frames:
            crops[frame.index] = crop
          batch.append(crop)
          slots.append(len(index) - 1)
          if len(batch) == self.batch_size:
            jobs.put((np.stack(batch), slots))
            batch, slots = [], []
        if batch:
          jobs.put((np.stack(batch), slots))
        jobs.put(None)
      except Exception as e:  # pylint: disable=broad-except
        jobs.put(e)  # raised again in the consumer, with its own message

    threading.Thread(target=produce, daemon=True).start()
    results = []
    while (job := jobs.get()) is not None:
      if isinstance(job, Exception):
        raise job
      images, slots = job
      n = len(images)
      padded = np.zeros((self.batch_size,) + images.shape[1:], np.uint8)
      padded[:n] = images
      probs = self._predict(self.variables, self.dp.to_global({"image": padded}))
      results.append((probs, n, slots))  # not read yet: the device keeps working
    probs = np.full((len(index), len(self.au_names)), np.nan, np.float32)
    for p, n, slots in results:
      probs[slots] = np.asarray(p)[:n]
    return VideoPrediction(name, np.asarray(index, int), np.asarray(found, bool), probs, crops)

  def attention_maps(self, crops: dict) -> dict:
    """frame -> (probs (L,), attention (L, h, w)) for the given crops."""
    if not crops:
      return {}
    keys = sorted(crops)
    probs, weights = self._attention(self.variables, np.stack([crops[k] for k in keys]))
    side = int(round(weights.shape[-1] ** 0.5))
    weights = np.asarray(weights).reshape(len(keys), len(self.au_names), side, side)
    return {k: (np.asarray(probs[i]), weights[i]) for i, k in enumerate(keys)}


def _folder_videos(root: pathlib.Path) -> dict[str, pathlib.Path]:
  """Video name -> folder of frame files, for the accepted folder layouts."""
  if (root / "cropped_aligned").is_dir():
    root = root / "cropped_aligned"
  has_frames = lambda d: any(p.suffix.lower() in IMAGE_EXTENSIONS for p in d.iterdir())
  if has_frames(root):
    return {root.name: root}
  videos = {d.name: d for d in sorted(root.iterdir()) if d.is_dir() and has_frames(d)}
  if not videos:
    raise faces.FaceInputError(f"{root}: no frame images (<frame>.jpg) in it or in its "
                               "sub-folders; expected the Aff-Wild2 cropped_aligned layout")
  return videos


def _folder_frames(folder: pathlib.Path) -> Iterator[faces.Frame]:
  files = {}
  for p in folder.iterdir():
    if p.suffix.lower() in IMAGE_EXTENSIONS:
      if not p.stem.isdigit():
        raise faces.FaceInputError(f"{p}: frame files must be named by their frame number, "
                                   "e.g. 00001.jpg")
      files[int(p.stem)] = p
  for i in range(1, max(files) + 1):
    path = files.get(i)
    crop = faces.read_image(path) if path is not None else None
    yield faces.Frame(index=i, face=crop, box=None,
                      source_shape=crop.shape[:2] if crop is not None else (0, 0))


def fill_faceless(probs: np.ndarray, face_found: np.ndarray) -> np.ndarray:
  """Each faceless frame takes the prediction of its nearest frame with a face (ABAW rule)."""
  if not face_found.any():
    return np.zeros_like(probs)
  idx = np.flatnonzero(face_found)
  pos = np.searchsorted(idx, np.arange(len(probs)))
  left = idx[np.clip(pos - 1, 0, len(idx) - 1)]
  right = idx[np.clip(pos, 0, len(idx) - 1)]
  rows = np.arange(len(probs))
  nearest = np.where(np.abs(rows - left) <= np.abs(right - rows), left, right)
  return probs[nearest]


def write_outputs(pred: VideoPrediction, out: pathlib.Path, au_names, *, smooth_window: int,
                  threshold: float, abaw: bool) -> dict:
  """The per-frame CSV (and the ABAW file); returns a small summary of the video."""
  probs = pred.probs
  if smooth_window > 1 and pred.face_found.any():
    probs = metrics.smooth(np.nan_to_num(probs), np.zeros(len(probs), int), smooth_window,
                           valid=pred.face_found, frames=pred.frames)
  probs = np.where(pred.face_found[:, None], probs, np.nan)
  out.mkdir(parents=True, exist_ok=True)
  with open(out / f"{pred.name}.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["frame", "face_found", *(f"p_{n}" for n in au_names), *au_names])
    for i, frame in enumerate(pred.frames):
      if pred.face_found[i]:
        w.writerow([frame, 1, *(f"{p:.4f}" for p in probs[i]),
                    *(int(p >= threshold) for p in probs[i])])
      else:
        w.writerow([frame, 0, *([""] * 2 * len(au_names))])
  if abaw:
    _write_abaw(probs, pred, out / "abaw", au_names, threshold)
  return {"video": pred.name, "frames": int(len(pred.frames)),
          "frames_with_face": int(pred.face_found.sum())}


def _write_abaw(probs, pred, out: pathlib.Path, au_names, threshold):
  """One txt per video: the challenge header, then a 0/1 line for EVERY frame 1..N."""
  challenge = aus.names(aus.AFFWILD2)
  missing = [n for n in challenge if n not in au_names]
  if missing:
    raise ValueError(f"--abaw needs the 12 Aff-Wild2 AUs; this model lacks {missing}")
  cols = [list(au_names).index(n) for n in challenge]
  filled = fill_faceless(np.nan_to_num(probs), pred.face_found)[:, cols]
  if not np.array_equal(pred.frames, np.arange(1, len(pred.frames) + 1)):
    raise ValueError(f"{pred.name}: frames must be numbered 1..N for the ABAW format")
  out.mkdir(parents=True, exist_ok=True)
  lines = [",".join(challenge)] + [",".join(str(int(v >= threshold)) for v in row)
                                   for row in filled]
  (out / f"{pred.name}.txt").write_text("\n".join(lines) + "\n")


def predict(workdir, input_path: str, output, *, checkpoint="best", smooth=False,
            abaw=False, heatmap_frames=(), timeline=False) -> list[dict]:
  """Runs a checkpoint on `input_path`; writes CSVs/ABAW/plots into `output`; returns summaries."""
  out = pathlib.Path(output)
  predictor = Predictor(workdir, checkpoint)
  config, names = predictor.config, predictor.au_names
  window = config.eval.smoothing_window if smooth else 1
  t0 = time.perf_counter()
  if input_path.startswith("tfds:"):
    split = input_path[len("tfds:"):]
    p = evaluate.predict_split(config, predictor.variables, split=split, dp=predictor.dp)
    streams = []
    for v in np.unique(p["video"].astype(str)):
      rows = p["video"].astype(str) == v
      streams.append(VideoPrediction(v, p["frame"][rows], np.ones(rows.sum(), bool),
                                     p["probs"][rows].astype(np.float32), {}))
    predictions = iter(streams)
  else:
    path = pathlib.Path(input_path)
    if path.is_dir():
      videos = _folder_videos(path)
      predictions = (predictor.run(_folder_frames(d), name, heatmap_frames)
                     for name, d in videos.items())
    else:
      cropper = faces.FaceCropper(crop_size=predictor.frame_size)
      stream = faces.faces_from_path(path, cropper)  # raises FaceInputError up front
      predictions = iter([predictor.run(stream, path.stem, heatmap_frames)])
  summaries, total = [], 0
  for pred in predictions:
    s = write_outputs(pred, out, names, smooth_window=window, threshold=config.eval.threshold,
                      abaw=abaw)
    total += s["frames"]
    if not pred.face_found.any():
      s["warning"] = "no face found in any frame"
      print(f"warning: {pred.name}: no face found in any frame; every row has face_found=0")
    if timeline:
      plots.au_timeline(pred.frames, np.nan_to_num(pred.probs), pred.face_found, names,
                        out / f"{pred.name}_timeline.png",
                        title=f"{pred.name}: AU probabilities per frame")
    for frame, (probs, att) in predictor.attention_maps(pred.crops).items():
      plots.attention_heatmaps(pred.crops[frame], att, probs, names,
                               out / f"{pred.name}_frame{frame:05d}_attention.png",
                               title=f"{pred.name}, frame {frame}: cross-attention per AU")
    summaries.append(s)
  elapsed = time.perf_counter() - t0
  print(f"predicted {total} frames of {len(summaries)} video(s) in {elapsed:.1f}s "
        f"({total / max(elapsed, 1e-9):.1f} frames/s, checkpoint step {predictor.step}); "
        f"outputs in {out}")
  return summaries


FLAGS = flags.FLAGS


def define_flags():
  """The CLI's flags (defined only when run as a program, so modules can import each other)."""
  flags.DEFINE_string("workdir", None, "The training run whose checkpoint to use.")
  flags.DEFINE_string("checkpoint", "best", "'best', 'latest' or a step number.")
  flags.DEFINE_string("input", None, "A video/photo, a folder of face frames, or tfds:SPLIT.")
  flags.DEFINE_string("output", None, "Output folder.")
  flags.DEFINE_bool("smooth", False, "Smooth probabilities within each video (config window).")
  flags.DEFINE_bool("abaw", False, "Also write the ABAW3 submission format (abaw/<video>.txt).")
  flags.DEFINE_list("heatmap_frames", [], "Frame numbers to draw attention heatmaps for.")
  flags.DEFINE_bool("timeline", False, "Draw an AU timeline per video.")


def main(argv):
  del argv
  xla_cpu.apply_defaults()  # before anything starts JAX's backend
  try:
    predict(FLAGS.workdir, FLAGS.input, FLAGS.output, checkpoint=FLAGS.checkpoint,
            smooth=FLAGS.smooth, abaw=FLAGS.abaw, timeline=FLAGS.timeline,
            heatmap_frames={int(f) for f in FLAGS.heatmap_frames})
  except (FileNotFoundError, ValueError, checkpoints.CheckpointError) as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["workdir", "input", "output"])
  app.run(main)
