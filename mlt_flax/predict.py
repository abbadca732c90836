"""Jitted batch inference on your own footage: per-frame AU probabilities, CSVs, ABAW files.

  python -m mlt_flax.predict --workdir=RUN [--checkpoint=best] --input=PATH --output=DIR
                             [--smooth] [--abaw] [--heatmap_frames=1,40] [--timeline]
  python -m mlt_flax.predict --model=EXPORTED --input=PATH --output=DIR [...]

--model runs a folder written by `python -m mlt_flax.export` with ONNX Runtime instead of a
run's checkpoint with JAX (mlt_flax/serving.py): the same outputs, no attention heatmaps,
no tfds: input.

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

if __name__ == "__main__":  # as a program: TensorFlow loads with its start-up lines
  from mlt_flax import console as _console  # kept off the terminal, before any import
  _console.quiet_native_logs()  # pulls it in (console.quiet_native_logs says why)

import csv
import dataclasses
import pathlib
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
from mlt_flax import console
from mlt_flax import faces
from mlt_flax import media
from mlt_flax import metrics
from mlt_flax import plots
from mlt_flax import runtime
from mlt_flax import xla_cpu
from mlt_flax.models import mlt

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
  """A run's checkpoint, ready for batch inference on this process's devices."""

  def __init__(self, workdir, checkpoint: str = "best"):
    self.dp = runtime.DataParallel(jax.local_devices())
    self.run_ = runtime.load_run(workdir, checkpoint, self.dp)
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

  def _batches(self, frames: Iterator[faces.Frame], index: list, found: list, crops: dict,
               heatmap_frames) -> Iterator[dict]:
    """Fixed-shape batches of face crops: {'image': (B, S, S, 3), 'slot': (B,), 'n': ()}."""
    images, slots = [], []

    def batch():
      padded = np.zeros((self.batch_size, self.frame_size, self.frame_size, 3), np.uint8)
      padded[:len(images)] = images
      return {"image": padded, "slot": np.asarray(slots, int)}

    for frame in frames:
      index.append(frame.index)
      found.append(frame.face is not None)
      if frame.face is None:
        continue
      crop = self._fit(frame.face)
      if frame.index in heatmap_frames:
        crops[frame.index] = crop
      images.append(crop)
      slots.append(len(index) - 1)
      if len(images) == self.batch_size:
        yield batch()
        images, slots = [], []
    if images:
      yield batch()

  def run(self, frames: Iterator[faces.Frame], name: str,
          heatmap_frames=()) -> VideoPrediction:
    """Probabilities for a stream of frames; decoding overlaps the device's work."""
    index, found, crops = [], [], {}
    batches = runtime.prefetch(self._batches(frames, index, found, crops, heatmap_frames),
                               PREFETCH_BATCHES)
    results = list(runtime.infer(self.predict, self.variables, batches, self.dp))
    probs = np.full((len(index), len(self.au_names)), np.nan, np.float32)
    for batch, p in results:
      probs[batch["slot"]] = p[:len(batch["slot"])]
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


def write_outputs(pred: VideoPrediction, out: pathlib.Path, au_names, *, smooth_window: int,
                  threshold: float, abaw: bool) -> dict:
  """The per-frame CSV (and the ABAW file); returns a small summary of the video.

  Both hold the probabilities a challenge submission holds (`metrics.challenge_probs`):
  faceless frames take their nearest face frame's prediction, then (smooth_window > 1) the
  moving mean over frame numbers. The CSV leaves faceless rows blank (face_found = 0); the
  ABAW file, like the challenge, has a line for every frame.
  """
  submission = metrics.challenge_probs(np.nan_to_num(pred.probs), pred.face_found,
                                       np.zeros(len(pred.frames), int), pred.frames,
                                       smooth_window)
  out.mkdir(parents=True, exist_ok=True)
  with open(out / f"{pred.name}.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["frame", "face_found", *(f"p_{n}" for n in au_names), *au_names])
    for i, frame in enumerate(pred.frames):
      if pred.face_found[i]:
        w.writerow([frame, 1, *(f"{p:.4f}" for p in submission[i]),
                    *(int(p >= threshold) for p in submission[i])])
      else:
        w.writerow([frame, 0, *([""] * 2 * len(au_names))])
  if abaw:
    _write_abaw(submission, pred, out / "abaw", au_names, threshold)
  return {"video": pred.name, "frames": int(len(pred.frames)),
          "frames_with_face": int(pred.face_found.sum())}


def _write_abaw(submission, pred, out: pathlib.Path, au_names, threshold):
  """One txt per video: the challenge header, then a 0/1 line for EVERY frame 1..N."""
  challenge = aus.names(aus.AFFWILD2)
  missing = [n for n in challenge if n not in au_names]
  if missing:
    raise ValueError(f"--abaw needs the 12 Aff-Wild2 AUs; this model lacks {missing}")
  cols = [list(au_names).index(n) for n in challenge]
  if not np.array_equal(pred.frames, np.arange(1, len(pred.frames) + 1)):
    raise ValueError(f"{pred.name}: frames must be numbered 1..N for the ABAW format")
  out.mkdir(parents=True, exist_ok=True)
  lines = [",".join(challenge)] + [",".join(str(int(v >= threshold)) for v in row)
                                   for row in submission[:, cols]]
  (out / f"{pred.name}.txt").write_text("\n".join(lines) + "\n")


def predict(workdir, input_path: str, output, *, checkpoint="best", smooth=False,
            abaw=False, heatmap_frames=(), timeline=False, model=None) -> list[dict]:
  """Runs a checkpoint on `input_path`; writes CSVs/ABAW/plots into `output`; returns summaries.

  model: an export folder (mlt_flax.export) to run with ONNX Runtime instead (workdir unused).
  """
  out = pathlib.Path(output)
  if model is not None:
    if input_path.startswith("tfds:"):
      raise ValueError(f"--input={input_path}: a TFDS split needs the run (--workdir); "
                       "--model takes videos, photos and frame folders")
    from mlt_flax import serving  # pylint: disable=g-import-not-at-top  (ONNX Runtime, on demand)
    predictor = serving.OnnxPredictor(model)
  else:
    predictor = Predictor(workdir, checkpoint)
  config, names = predictor.config, predictor.au_names
  window = config.eval.smoothing_window if smooth else 1
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
      streams.append(VideoPrediction(v, p["frame"][rows], p["face"][rows], probs, {}))
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
  """The CLI's flags (defined only when run as a program, so the module imports cleanly)."""
  flags.DEFINE_string("workdir", None, "The training run whose checkpoint to use.")
  flags.DEFINE_string("model", None, "Instead of --workdir: a folder written by "
                      "`python -m mlt_flax.export`, run with ONNX Runtime.")
  flags.mark_flags_as_mutual_exclusive(["workdir", "model"], required=True)
  flags.DEFINE_string("checkpoint", "best", "'best' (by validation mean F1), 'latest' or a "
                      "step number.")
  flags.DEFINE_string("input", None, "A video or photo, a folder of face frames "
                      "(cropped_aligned layout), or tfds:SPLIT.", required=True)
  flags.DEFINE_string("output", None, "Output folder.", required=True)
  flags.DEFINE_bool("smooth", False, "Smooth probabilities within each video (the config's "
                    "eval.smoothing_window).")
  flags.DEFINE_bool("abaw", False, "Also write the ABAW3 submission format (abaw/<video>.txt).")
  flags.DEFINE_list("heatmap_frames", [], "Frame numbers to draw attention heatmaps for.")
  flags.DEFINE_bool("timeline", False, "Draw an AU timeline per video.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  xla_cpu.apply_defaults()  # before anything starts JAX's backend
  console.setup(FLAGS.output)
  try:
    predict(FLAGS.workdir, FLAGS.input, FLAGS.output, checkpoint=FLAGS.checkpoint,
            smooth=FLAGS.smooth, abaw=FLAGS.abaw, timeline=FLAGS.timeline,
            heatmap_frames={int(f) for f in FLAGS.heatmap_frames}, model=FLAGS.model)
  except (FileNotFoundError, ValueError, checkpoints.CheckpointError) as e:
    console.exit_with_error(e)


if __name__ == "__main__":
  define_flags()
  app.run(main)
