"""An external reference: the textbook CNN, built and trained by Keras alone, scored by our metric.

  python -m benchmarks.keras_reference --root=data/digit_videos --workdir=workdir/heads/digits \
      [--cap_minutes=15] [--seeds=3] [--max_epochs=100] [--patience=4]

A fault of mlt_flax's pipeline (loading, augmentation, training loop, evaluation) shows as a
gap between this and benchmarks/heads.py's plain_cnn_pooled, the same net and recipe trained
by mlt_flax. Nothing of mlt_flax is in its data or training path:
  loading   its own: the Aff-Wild2-layout label files (AU_Detection_Challenge/<Split>_Set/
            <video>.txt: a header, then one line of 0/1/-1 per frame) and the frames
            (cropped_aligned/<video>/<frame:05d>.jpg) read with NumPy and keras.utils.load_img;
            frames without an image are not trained on;
  model     keras layers: four blocks of two 3x3 Conv2D + BatchNormalization + ReLU and a 2x2
            MaxPooling2D (32, 64, 128, 128 channels), GlobalAveragePooling2D, Dropout(0.2),
            one sigmoid Dense per label, on --image_size frames scaled to [-1, 1], with
            RandomTranslation(0.1, 0.1) in training;
  training  Adam 1e-3, binary cross-entropy (not-annotated entries, -1, carry no loss), batch
            32, `model.fit` with EarlyStopping on the validation macro F1 at 0.5 (keras.
            metrics.F1Score; patience --patience epochs, best weights restored) and a callback
            that stops it at --cap_minutes of wall clock (counted from the seed's start; the
            frames are read once, before the first seed).
Scoring is ours (mlt_flax.metrics, the only project code here): the test split's every
labelled frame (a frame without an image takes the prediction of its video's nearest frame
with one, as the challenge protocol of mlt_flax.evaluate), threshold 0.5, no smoothing, mean
F1 over the labels. Each finished seed appends one line to <workdir>/runs.jsonl, in the form of
benchmarks/heads.py's lines (model "keras_textbook_cnn"), so that its table includes it;
a seed with a line is not run again.
"""

import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: quiet logs

from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position
import keras  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from benchmarks import cli  # pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import heads  # pylint: disable=g-import-not-at-top,wrong-import-position

MODEL = heads.KERAS  # its name in runs.jsonl
WIDTHS = heads.TEXTBOOK_WIDTHS  # the plain CNN's, so that heads' table compares like with like
DROPOUT = 0.2
TRANSLATE = 0.1  # of the side, each axis
LEARNING_RATE = 1e-3
BATCH = 32
THRESHOLD = 0.5
SPLIT_FOLDERS = {"train": "Train_Set", "validation": "Validation_Set", "test": "Test_Set"}
PROTOCOL = heads.PROTOCOL


def read_split(root, split: str, image_size: int) -> dict:
  """Every labelled frame of a split: images (N, S, S, 3) uint8 (zeros where the frame has
  no image), labels (N, L) int in {-1, 0, 1}, face (N,) bool, video (N,) str, frame (N,)."""
  root = pathlib.Path(root)
  folders = list(root.glob(f"**/AU_Detection_Challenge/{SPLIT_FOLDERS[split]}"))
  if len(folders) != 1:
    raise FileNotFoundError(f"{root}: expected one AU_Detection_Challenge/"
                            f"{SPLIT_FOLDERS[split]} folder, found {len(folders)}")
  out = {k: [] for k in ("images", "labels", "face", "video", "frame")}
  for path in sorted(folders[0].glob("*.txt")):
    lines = [l for l in path.read_text().splitlines()[1:] if l.strip()]
    for frame, line in enumerate(lines, start=1):
      try:
        labels = [int(v) for v in line.split(",")]
      except ValueError:
        raise ValueError(f"{path}:{frame + 1}: expected comma-separated 0, 1 or -1, got "
                         f"{line!r}") from None
      image_path = root / "cropped_aligned" / path.stem / f"{frame:05d}.jpg"
      face = image_path.exists()
      image = (np.asarray(keras.utils.load_img(image_path, target_size=(image_size,
                                                                        image_size)))
               if face else np.zeros((image_size, image_size, 3), np.uint8))
      for k, v in (("images", image), ("labels", labels), ("face", face),
                   ("video", path.stem), ("frame", frame)):
        out[k].append(v)
  if not out["labels"]:
    raise FileNotFoundError(f"{folders[0]}: no label lines")
  return {"images": np.stack(out["images"]).astype(np.uint8),
          "labels": np.asarray(out["labels"], np.int64), "face": np.asarray(out["face"]),
          "video": np.asarray(out["video"]), "frame": np.asarray(out["frame"])}


def build_model(image_size: int, num_labels: int) -> keras.Model:
  """uint8-valued images (B, S, S, 3) -> per-label probabilities (B, L)."""
  images = keras.Input((image_size, image_size, 3))
  x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(images)
  x = keras.layers.RandomTranslation(TRANSLATE, TRANSLATE)(x)  # active in training only
  for width in WIDTHS:
    for _ in range(2):
      x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
      x = keras.layers.BatchNormalization()(x)
      x = keras.layers.Activation("relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
  x = keras.layers.GlobalAveragePooling2D()(x)
  x = keras.layers.Dropout(DROPOUT)(x)
  return keras.Model(images, keras.layers.Dense(num_labels, activation="sigmoid")(x))


def masked_bce(y_true, y_pred):
  """Binary cross-entropy over the annotated entries (labels -1 carry no loss)."""
  mask = keras.ops.cast(y_true >= 0, y_pred.dtype)
  target = keras.ops.cast(keras.ops.maximum(y_true, 0), y_pred.dtype)
  p = keras.ops.clip(y_pred, keras.config.epsilon(), 1 - keras.config.epsilon())
  bce = -(target * keras.ops.log(p) + (1 - target) * keras.ops.log(1 - p))
  return keras.ops.sum(bce * mask, axis=-1) / keras.ops.maximum(keras.ops.sum(mask, axis=-1), 1)


class MacroF1(keras.metrics.F1Score):
  """keras.metrics.F1Score (macro, threshold 0.5), with not-annotated entries (-1) counted as
  negatives: the selection metric of EarlyStopping."""

  def __init__(self, **kwargs):
    super().__init__(average="macro", threshold=THRESHOLD, name="f1", **kwargs)

  def update_state(self, y_true, y_pred, sample_weight=None):
    super().update_state(keras.ops.maximum(y_true, 0), y_pred, sample_weight)


class WallClock(keras.callbacks.Callback):
  """Stops training once `seconds` have passed since `start` (checked after every batch)."""

  def __init__(self, start: float, seconds: float):
    super().__init__()
    self.start, self.seconds, self.stopped = start, seconds, False

  def on_train_batch_end(self, batch, logs=None):
    if time.perf_counter() - self.start > self.seconds:
      self.model.stop_training = self.stopped = True


def challenge_f1(probs: np.ndarray, data: dict) -> float:
  """Our metric (mlt_flax.metrics): faceless frames take their nearest face frame's
  prediction, then the mean over labels of the pooled F1 at THRESHOLD."""
  from mlt_flax import metrics  # pylint: disable=g-import-not-at-top
  order = np.lexsort((data["frame"], data["video"]))  # rows sorted by (video, frame)
  filled = metrics.challenge_probs(probs[order], data["face"][order], data["video"][order],
                                   data["frame"][order], window=1)
  return float(metrics.f1_scores(filled, data["labels"][order], THRESHOLD)[1])


def read_splits(root, image_size: int) -> dict:
  """{split: read_split(...)} of the three splits."""
  return {s: read_split(root, s, image_size) for s in SPLIT_FOLDERS}


def run_seed(root, seed: int, *, image_size: int, cap_s: float, max_epochs: int,
             patience: int, splits: dict | None = None) -> dict:
  """Trains and scores one seed; returns its runs.jsonl line."""
  start = time.perf_counter()
  splits = splits or read_splits(root, image_size)
  train, val, test = splits["train"], splits["validation"], splits["test"]
  keras.utils.set_random_seed(seed)
  model = build_model(image_size, train["labels"].shape[1])
  model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss=masked_bce,
                metrics=[MacroF1()])
  stop = keras.callbacks.EarlyStopping(monitor="val_f1", mode="max", patience=patience,
                                       restore_best_weights=True)
  clock = WallClock(start, cap_s)
  keep = train["face"]  # frames without an image are not trained on
  history = model.fit(
      train["images"][keep].astype(np.float32), train["labels"][keep].astype(np.float32),
      batch_size=BATCH, epochs=max_epochs, shuffle=True, verbose=2,
      validation_data=(val["images"][val["face"]].astype(np.float32),
                       val["labels"][val["face"]].astype(np.float32)),
      callbacks=[stop, clock])
  val_f1 = history.history["val_f1"]
  best_epoch = int(np.argmax(val_f1))
  # EarlyStopping restored the best epoch's weights (also when the clock stopped the run).
  probs = model.predict(test["images"].astype(np.float32), batch_size=128, verbose=0)
  epochs = len(val_f1)
  stopped = ("cap" if clock.stopped else "early stop" if stop.stopped_epoch > 0 else
             "max epochs")
  return {"model": MODEL, "seed": seed, "test_f1": challenge_f1(probs, test),
          "val_f1": float(challenge_f1(
              model.predict(val["images"].astype(np.float32), batch_size=128, verbose=0),
              val)),
          "val_f1_keras": float(val_f1[best_epoch]), "best_epoch": best_epoch + 1,
          "epochs": float(epochs), "seconds": round(time.perf_counter() - start, 1),
          "stopped": stopped, "cap_minutes": cap_s / 60, "protocol": PROTOCOL}


def _define_flags() -> None:
  flags.DEFINE_string("root", None, "The dataset in the Aff-Wild2 layout (cropped_aligned/, "
                      "AU_Detection_Challenge/{Train,Validation,Test}_Set/).", required=True)
  flags.DEFINE_string("workdir", None, "Where runs.jsonl is (benchmarks/heads.py's workdir).",
                      required=True)
  flags.DEFINE_float("cap_minutes", 15.0, "Wall-clock cap of every seed, minutes (from its "
                     "model's construction; the frames are read once, before the first seed).")
  flags.DEFINE_integer("seeds", 3, "Seeds (0, 1, ...).")
  flags.DEFINE_integer("max_epochs", 100, "Epochs if neither early stopping nor the cap ends "
                       "the run first.")
  flags.DEFINE_integer("patience", 4, "Epochs without a better validation F1 before stopping.")
  flags.DEFINE_integer("image_size", 112, "Frames are resized to this side (the MLT's input).")


def main() -> None:
  f = flags.FLAGS
  workdir = pathlib.Path(f.workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  done = {r["seed"] for r in heads.read_runs(workdir) if r["model"] == MODEL}
  splits = None
  for seed in range(f.seeds):
    if seed in done:
      continue
    if splits is None:
      splits = read_splits(f.root, f.image_size)
    run = run_seed(f.root, seed, image_size=f.image_size, cap_s=f.cap_minutes * 60,
                   max_epochs=f.max_epochs, patience=f.patience, splits=splits)
    heads.append_run(workdir, run)
    print(f"{MODEL} seed {seed}: test mean F1 {run['test_f1']:.3f} (best validation "
          f"{run['val_f1']:.3f} at epoch {run['best_epoch']} of {run['epochs']:.0f}; "
          f"{run['stopped']}, {run['seconds']:.0f}s)", flush=True)


if __name__ == "__main__":
  cli.run(_define_flags, main)
