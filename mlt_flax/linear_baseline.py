"""A linear model on raw pixels: the honest difficulty check of an Aff-Wild2-layout dataset.

Reads ``<root>/AU_Detection_Challenge/{Train_Set,Validation_Set,Test_Set}/<video>.txt`` and
``<root>/cropped_aligned/<video>/<frame:05d>.jpg`` directly (NumPy + OpenCV, no TFDS), turns each
frame into a small grey (or colour) thumbnail, standardises the pixels with the training
statistics and fits one class-balanced, L2-regularised logistic regression per AU (full-batch
Adam in NumPy). A frame is used when its image exists and, per AU, when its label is not -1.

Scores are per-AU F1 on the validation frames (or those of ``--split``, e.g. test), TP/FP/FN pooled over all frames of the split,
predicting present where the probability is >= ``threshold`` (0.5). The chance baseline is the
all-positive predictor, whose F1 is 2P / (2P + N) for P positive and N negative frames.

If this model scores close to a deep model, the dataset is too easy: AUs would be readable
from fixed pixels despite pose, scale and identity variation.

Usage:  python -m mlt_flax.linear_baseline --root=data/synthetic [--size=32] [--color]
            [--l2=0.001] [--steps=300] [--split=validation|test] [--json]
"""

import dataclasses
import json
import os
import pathlib
from typing import Any

from absl import app
from absl import flags
import cv2
import numpy as np

from mlt_flax import aus
from mlt_flax import metrics
from mlt_flax.data import synthetic


@dataclasses.dataclass(frozen=True)
class LinearConfig:
  """Features and optimiser of the per-AU logistic regressions."""
  size: int = 32  # thumbnails are size x size pixels (area-downsampled)
  color: bool = False  # RGB thumbnails instead of grey
  l2: float = 1e-3  # weight decay on the (standardised-feature) weights
  steps: int = 300  # full-batch Adam steps
  learning_rate: float = 0.02
  adam_b1: float = 0.9
  adam_b2: float = 0.999
  adam_eps: float = 1e-8
  balanced: bool = True  # weight positives and negatives to equal total mass per AU
  threshold: float = 0.5  # on the predicted probability
  std_floor: float = 1e-3  # keeps constant pixels from dividing by zero
  mass_floor: float = 1e-6  # keeps an AU without positives from a log(0) prior


def read_split(root: str | os.PathLike, split: str, size: int = 32, color: bool = False
               ) -> tuple[np.ndarray, np.ndarray, int]:
  """Thumbnails and labels of every frame with an image in one split.

  Args:
    root: the folder holding ``AU_Detection_Challenge/`` and ``cropped_aligned/``.
    split: "train", "validation" or "test".
    size: thumbnail side.
    color: RGB (3 channels) instead of grey.

  Returns:
    features: (N, size * size * C) float32 pixels in [0, 1].
    labels: (N, 12) int8 in {-1, 0, 1}, columns in ``aus.AFFWILD2`` order.
    num_label_rows: label rows in the split, frames without an image included.
  """
  root = pathlib.Path(root)
  labels_dir = root / synthetic.LABELS_DIR / synthetic.SPLIT_DIRS[split]
  label_files = sorted(labels_dir.glob("*.txt"))
  if not label_files:
    raise FileNotFoundError(f"no label files in {labels_dir}")
  header = ",".join(aus.names(synthetic.AU_ORDER))
  features, labels, num_rows = [], [], 0
  for path in label_files:
    lines = path.read_text().splitlines()
    if not lines or lines[0].strip() != header:
      raise ValueError(f"{path}:1: header is not {header!r}")
    frame_dir = root / synthetic.IMAGES_DIR / path.stem
    present = set(os.listdir(frame_dir)) if frame_dir.is_dir() else set()
    for number, line in enumerate(lines[1:], start=synthetic.FIRST_FRAME):
      num_rows += 1
      name = synthetic.FRAME_NAME.format(number)
      if name not in present:
        continue
      image = cv2.imread(str(frame_dir / name), cv2.IMREAD_COLOR if color else
                         cv2.IMREAD_GRAYSCALE)
      thumb = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
      features.append(thumb.reshape(-1).astype(np.float32) / 255.0)
      labels.append([int(v) for v in line.split(",")])
  return np.stack(features), np.asarray(labels, np.int8), num_rows


def fit_logistic(x: np.ndarray, labels: np.ndarray, config: LinearConfig = LinearConfig()
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Per-AU logistic regressions on standardised features.

  Args:
    x: (N, D) standardised features.
    labels: (N, K) in {-1, 0, 1}; -1 entries carry no loss.
    config: optimiser settings.

  Returns:
    weights (D, K) and biases (K,).
  """
  y = (labels == 1).astype(np.float32)
  valid = (labels != synthetic.NOT_ANNOTATED).astype(np.float32)
  pos = np.sum(y * valid, axis=0)
  neg = np.sum((1 - y) * valid, axis=0)
  if config.balanced:  # each class gets half of the loss mass, so rare AUs are not ignored
    w_pos = 0.5 / np.maximum(pos, 1)
    w_neg = 0.5 / np.maximum(neg, 1)
  else:
    w_pos = w_neg = 1.0 / np.maximum(pos + neg, 1)
  sample_w = valid * (y * w_pos + (1 - y) * w_neg)  # (N, K), sums to 1 per AU
  weights = np.zeros((x.shape[1], y.shape[1]), np.float32)
  # Start at the (weighted) prior log-odds: 0 when balanced, the base rate otherwise.
  pos_mass = np.maximum(np.sum(sample_w * y, axis=0), config.mass_floor)
  neg_mass = np.maximum(np.sum(sample_w * (1 - y), axis=0), config.mass_floor)
  bias = np.log(pos_mass / neg_mass).astype(np.float32)
  params = [weights, bias]
  m = [np.zeros_like(p) for p in params]
  v = [np.zeros_like(p) for p in params]
  for step in range(1, config.steps + 1):
    logits = x @ params[0] + params[1]
    g = sample_w * (1.0 / (1.0 + np.exp(-logits)) - y)  # d(weighted BCE)/d(logits)
    grads = [x.T @ g + config.l2 * params[0], g.sum(axis=0)]
    for k, grad in enumerate(grads):
      m[k] = config.adam_b1 * m[k] + (1 - config.adam_b1) * grad
      v[k] = config.adam_b2 * v[k] + (1 - config.adam_b2) * grad ** 2
      m_hat = m[k] / (1 - config.adam_b1 ** step)
      v_hat = v[k] / (1 - config.adam_b2 ** step)
      params[k] = params[k] - config.learning_rate * m_hat / (np.sqrt(v_hat) + config.adam_eps)
  return params[0], params[1]


def fit_and_score(root: str | os.PathLike, config: LinearConfig = LinearConfig(),
                  split: str = "validation") -> dict[str, Any]:
  """Trains on Train_Set frames and scores `split` (Validation_Set by default, or Test_Set):
  per-AU F1 and the chance F1 (the scored split's, under the keys ``val_*``, ``num_val``).

  Returns:
    A dict with ``aus`` (names), ``f1`` / ``train_f1`` / ``chance_f1`` / ``val_positive_rate``
    (name -> value), their means ``mean_f1`` / ``train_mean_f1`` / ``mean_chance_f1``, and the
    frame counts ``num_train`` / ``num_val`` (frames with an image).
  """
  x_train, y_train, _ = read_split(root, "train", config.size, config.color)
  x_val, y_val, _ = read_split(root, split, config.size, config.color)
  mean = x_train.mean(axis=0)
  std = np.maximum(x_train.std(axis=0), config.std_floor)
  standardise = lambda x: (x - mean) / std
  weights, bias = fit_logistic(standardise(x_train), y_train, config)
  predict = lambda x: ((standardise(x) @ weights + bias) >= np.log(
      config.threshold / (1 - config.threshold))).astype(np.int8)  # prob >= t <=> logit >= ..
  f1 = metrics.f1_scores(predict(x_val), y_val)[0]
  train_f1 = metrics.f1_scores(predict(x_train), y_train)[0]
  chance = metrics.f1_scores(np.ones_like(y_val), y_val)[0]
  valid = y_val != synthetic.NOT_ANNOTATED
  rate = np.sum((y_val == 1) & valid, axis=0) / np.maximum(valid.sum(axis=0), 1)
  names = aus.names(synthetic.AU_ORDER)
  as_dict = lambda a: {n: float(v) for n, v in zip(names, a)}
  return {
      "aus": list(names),
      "f1": as_dict(f1), "mean_f1": float(f1.mean()),
      "train_f1": as_dict(train_f1), "train_mean_f1": float(train_f1.mean()),
      "chance_f1": as_dict(chance), "mean_chance_f1": float(chance.mean()),
      "val_positive_rate": as_dict(rate),
      "num_train": int(len(x_train)), "num_val": int(len(x_val)), "split": split,
  }


def format_table(result: dict[str, Any]) -> str:
  """A text table: one row per AU with validation F1, chance F1, train F1, positive rate."""
  rows = [f"{'AU':<6}{'val F1':>8}{'chance':>8}{'train F1':>10}{'val pos':>9}"]
  for n in result["aus"]:
    rows.append(f"{n:<6}{result['f1'][n]:>8.3f}{result['chance_f1'][n]:>8.3f}"
                f"{result['train_f1'][n]:>10.3f}{result['val_positive_rate'][n]:>9.3f}")
  rows.append(f"{'mean':<6}{result['mean_f1']:>8.3f}{result['mean_chance_f1']:>8.3f}"
              f"{result['train_mean_f1']:>10.3f}")
  rows.append(f"({result['num_train']} train / {result['num_val']} "
              f"{result['split']} frames with a "
              "face; F1 pooled over frames, threshold 0.5 on the probability)")
  return "\n".join(rows)


FLAGS = flags.FLAGS


def define_flags():
  """The CLI's flags (defined only when run as a program, so the module imports cleanly)."""
  defaults = LinearConfig()
  flags.DEFINE_string("root", None, "Folder with AU_Detection_Challenge/ and cropped_aligned/.",
                      required=True)
  flags.DEFINE_integer("size", defaults.size, "Thumbnail side in pixels.")
  flags.DEFINE_boolean("color", defaults.color, "RGB thumbnails instead of grey.")
  flags.DEFINE_float("l2", defaults.l2, "Weight decay on the standardised-feature weights.")
  flags.DEFINE_integer("steps", defaults.steps, "Full-batch Adam steps.")
  flags.DEFINE_enum("split", "validation", ["validation", "test"], "The split scored.")
  flags.DEFINE_boolean("json", False, "Print the result as JSON instead of a table.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = dataclasses.replace(LinearConfig(), size=FLAGS.size, color=FLAGS.color,
                               l2=FLAGS.l2, steps=FLAGS.steps)
  result = fit_and_score(FLAGS.root, config, FLAGS.split)
  print(json.dumps(result, indent=1) if FLAGS.json else format_table(result))


if __name__ == "__main__":
  define_flags()
  app.run(main)
