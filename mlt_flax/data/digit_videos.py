"""Digit videos: a second benchmark of another nature, made from real images in a registry package.

The synthetic AU face videos (mlt_flax/data/synthetic/) are rendered by this project, and the
demo recipe was designed on them. This set is not rendered: its pixels are real handwritten
digits, the 1,797 8x8 scans of the UCI "optical recognition of handwritten digits" set that
scikit-learn ships in its wheel (`sklearn/datasets/data/digits.csv.gz`, an asset: mlt_flax/
assets.py), composed into multi-label videos with the segment structure of AU events and
written in the exact Aff-Wild2 layout, so that the real `abaw3_au` builder builds it.

A frame is 112x112 and holds up to four digits, one per quadrant, dark ink on a light
page as handwriting is. The scans are split once (a seeded permutation) into a training, a
validation and a test pool: no source image is in two splits. The 12 label columns, under
the Aff-Wild2 AU names by position (`LABELS`):
  columns 0-9 (AU1 ... AU24): a digit k is in the frame, for k = 0 ... 9;
  column 10 (AU25): three or more digits are in the frame;
  column 11 (AU26): the top-left quadrant holds a digit.
A video is a run of segments (SEGMENT_FRAMES long); at each segment boundary each quadrant
changes with probability CHANGE_PROB (a digit appears, leaves, or is replaced by another
scan), so labels hold for runs of frames and switch on and off like AU events. Within a
segment the digits drift and the frame flickers, as faces move and light changes between
video frames. Each video has its own background, ink colour and digit size.

Version 2 is a redesign of version 1 (light or dark pages, digits of 34-48 pixels placed
+-6 pixels off their quadrant's centre, one quadrant changing per 6-30 frames, "a digit
twice" as column 11), on which no model clearly beat saying "yes" to every label (docs/
recipe.md): its few distinct segments (about 170 in the training videos) and its inverted
pages measured nothing. Version 2 shows many more distinct frames for the same frame count
and keeps the contrast of the ink one way, so that a linear model on raw pixels beats the
all-positive predictor and a conv net beats the linear model.

Deterministic: the same seed gives the same bytes (for a given libjpeg).

Usage:  python -m mlt_flax.data.digit_videos --out_dir=data/digit_videos [--seed=0]
            [--num_train_videos=40] [--num_val_videos=10] [--num_test_videos=10]
            [--frames_per_video=80]
Build:  python -m mlt_flax.data.build --dataset=abaw3_au --manual_dir=data/digit_videos
            --data_dir=data/tfds_digits
"""

import dataclasses
import gzip
import json
import pathlib
import shutil

from absl import app
from absl import flags
import cv2
import numpy as np

from mlt_flax import assets
from mlt_flax.data import affwild2_format as affwild2
from mlt_flax.data.synthetic import layout
from mlt_flax.data.synthetic import writer

ASSET = "digits.csv.gz"
GENERATOR = "digit_videos"  # generator.json's 'generator' field: what wrote the folder
VERSION = 2
NUM_CLASSES = 10
LABELS = tuple(f"digit {k}" for k in range(NUM_CLASSES)) + ("three or more digits",
                                                             "a digit at the top left")
SIZE = 112  # frame side, Aff-Wild2's cropped_aligned size
SLOTS = ((28, 28), (28, 84), (84, 28), (84, 84))  # quadrant centres (row, column)
POOL_FRACTIONS = {"validation": 0.2, "test": 0.2}  # of the scans; the rest is training's
SEGMENT_FRAMES = (4, 12)  # a segment's length, uniform
FILL_PROB = 0.5  # each quadrant holds a digit at a video's start
CHANGE_PROB = 0.5  # at a boundary, each quadrant changes
REMOVE_PROB = 0.5  # and a changing occupied quadrant empties (else its digit is replaced)
DIGIT_PIXELS = (40, 50)  # a video's digit size
OFFSET = 3  # a digit's place in its quadrant, per segment: +-OFFSET pixels
DRIFT = 1.0  # and its slow drift within the segment: +-DRIFT pixels
TOP_LEFT = 0  # the quadrant of column 11
NOISE = 4.0  # per-frame pixel noise (grey levels)
FLICKER = 0.06  # per-frame brightness change, relative
JPEG_QUALITY = 90
SCAN_MAX = 16.0  # the scans' grey levels are 0..16


@dataclasses.dataclass(frozen=True)
class Scans:
  """The 8x8 scans (N, 8, 8) in [0, 1] and their digit classes (N,)."""
  images: np.ndarray
  classes: np.ndarray

  @classmethod
  def load(cls, path=None) -> "Scans":
    """The scans of the asset (or of a digits.csv.gz at `path`): 64 grey levels + the class
    per line."""
    path = pathlib.Path(path) if path else assets.path(ASSET)
    with gzip.open(path, "rt") as f:
      rows = np.loadtxt(f, delimiter=",")
    if rows.ndim != 2 or rows.shape[1] != 65:
      raise ValueError(f"{path}: expected lines of 64 grey levels and a class, got "
                       f"{rows.shape[-1]} columns")
    return cls(rows[:, :64].reshape(-1, 8, 8) / SCAN_MAX, rows[:, 64].astype(int))


def split_pools(num_scans: int, seed: int) -> dict[str, np.ndarray]:
  """Scan indices of each split's pool (train, validation, test): disjoint, from one seeded
  permutation."""
  order = np.random.default_rng([seed, 0]).permutation(num_scans)
  pools, start = {}, 0
  for split, fraction in POOL_FRACTIONS.items():
    count = int(round(num_scans * fraction))
    pools[split] = np.sort(order[start:start + count])
    start += count
  return {"train": np.sort(order[start:]), **pools}


def frame_labels(slots: list[int | None], classes: np.ndarray) -> np.ndarray:
  """The 12 labels (0/1) of a frame whose quadrants hold these scans (None: empty)."""
  present = [int(classes[s]) for s in slots if s is not None]
  labels = np.zeros(len(LABELS), np.int64)
  labels[present] = 1
  labels[NUM_CLASSES] = len(present) >= 3
  labels[NUM_CLASSES + 1] = slots[TOP_LEFT] is not None
  return labels


def plan_video(rng: np.random.Generator, pool: np.ndarray, num_frames: int
               ) -> tuple[list[list[int | None]], list[np.ndarray]]:
  """Per frame, the scan in each quadrant, and per frame each quadrant's offset (2,)."""
  slots = [int(rng.choice(pool)) if rng.random() < FILL_PROB else None for _ in SLOTS]
  per_frame, offsets = [], []
  t = 0
  while t < num_frames:
    length = int(rng.integers(SEGMENT_FRAMES[0], SEGMENT_FRAMES[1] + 1))
    base = rng.uniform(-OFFSET, OFFSET, (len(SLOTS), 2))
    phase = rng.uniform(0, 2 * np.pi, (len(SLOTS), 2))
    for i in range(min(length, num_frames - t)):
      per_frame.append(list(slots))
      offsets.append(base + DRIFT * np.sin(phase + 2 * np.pi * i / max(length, 1)))
    t += length
    for q in range(len(SLOTS)):  # the boundary
      if rng.random() >= CHANGE_PROB:
        continue
      if slots[q] is None or rng.random() >= REMOVE_PROB:
        slots[q] = int(rng.choice(pool))
      else:
        slots[q] = None
  return per_frame, offsets


def render_frame(rng: np.random.Generator, scans: Scans, slots: list[int | None],
                 offsets: np.ndarray, style: dict) -> np.ndarray:
  """One (SIZE, SIZE, 3) uint8 RGB frame: the video's background, its digits in ink."""
  ink = np.zeros((SIZE, SIZE), np.float32)
  for (cy, cx), scan, (dy, dx) in zip(SLOTS, slots, offsets):
    if scan is None:
      continue
    side = style["digit_pixels"]
    digit = cv2.resize(scans.images[scan].astype(np.float32), (side, side),
                       interpolation=cv2.INTER_CUBIC).clip(0, 1)
    y0 = int(round(cy + dy - side / 2))
    x0 = int(round(cx + dx - side / 2))
    ys, xs = slice(max(y0, 0), min(y0 + side, SIZE)), slice(max(x0, 0), min(x0 + side, SIZE))
    patch = digit[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    ink[ys, xs] = np.maximum(ink[ys, xs], patch)
  alpha = ink[..., None]
  frame = style["background"] * (1 - alpha) + style["ink"] * alpha
  frame = frame * (1 + rng.uniform(-FLICKER, FLICKER)) + rng.normal(0, NOISE, frame.shape)
  return frame.clip(0, 255).astype(np.uint8)


def video_style(rng: np.random.Generator) -> dict:
  """A video's look: a light page's gradient, a dark ink colour, a digit size."""
  corners = rng.uniform(150, 240, (2, 2, 3)).astype(np.float32)
  background = cv2.resize(corners, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
  ink = rng.uniform(0, 70, 3)
  return {"background": background, "ink": ink.astype(np.float32),
          "digit_pixels": int(rng.integers(DIGIT_PIXELS[0], DIGIT_PIXELS[1] + 1))}


def write_video(out: pathlib.Path, name: str, split: str, scans: Scans, pool: np.ndarray,
                num_frames: int, seed: tuple) -> dict:
  """One video's frames and label file in the Aff-Wild2 layout; returns its counts."""
  rng = np.random.default_rng(seed)
  per_frame, offsets = plan_video(rng, pool, num_frames)
  style = video_style(rng)
  labels = np.stack([frame_labels(s, scans.classes) for s in per_frame])
  label_path = out / affwild2.LABELS_FOLDER / affwild2.SPLIT_FOLDERS[split] / (
      name + affwild2.LABEL_SUFFIX)
  label_path.parent.mkdir(parents=True, exist_ok=True)
  label_path.write_text(affwild2.format_labels(labels))
  frame_dir = out / affwild2.IMAGES_FOLDER / name
  frame_dir.mkdir(parents=True, exist_ok=True)
  for t, (slots, offset) in enumerate(zip(per_frame, offsets)):
    image = render_frame(rng, scans, slots, offset, style)
    (frame_dir / affwild2.FRAME_NAME.format(t + 1)).write_bytes(
        writer.encode_jpeg(image, JPEG_QUALITY))
  used = {s for frame in per_frame for s in frame if s is not None}
  return {"name": name, "split": split, "frames": len(per_frame),
          "positives": labels.sum(0).tolist(), "scans": sorted(used)}


SPLIT_NAMES = {"train": "train", "validation": "val", "test": "test"}  # in the video names


def generate(out_dir, *, seed: int = 0, num_train_videos: int = 40, num_val_videos: int = 10,
             num_test_videos: int = 10, frames_per_video: int = 80, scans_path=None) -> dict:
  """Writes the digit videos into out_dir (idempotent: an identical generation is skipped).

  Video lengths are uniform in [0.75, 1.25] x frames_per_video. Returns the summary: per
  split the videos, frames, the scans used (indices) and each label's positive rate; "skipped": True if
  out_dir already held exactly this generation.
  """
  out = pathlib.Path(out_dir)
  params = {"generator": GENERATOR, "version": VERSION, "seed": seed,
            "num_train_videos": num_train_videos, "num_val_videos": num_val_videos,
            "num_test_videos": num_test_videos, "frames_per_video": frames_per_video}
  params_path = out / layout.PARAMS_FILENAME
  if params_path.exists():
    previous = json.loads(params_path.read_text())
    if previous.get("params") == params:
      return {**previous["summary"], "skipped": True}
    if previous.get("params", {}).get("generator") != GENERATOR:
      raise FileExistsError(f"{params_path}: written by another generator; choose another "
                            "out_dir")
    params_path.unlink()
  elif any((out / d).exists() for d in (affwild2.IMAGES_FOLDER, affwild2.LABELS_FOLDER)):
    raise FileExistsError(f"{out} holds {affwild2.IMAGES_FOLDER}/ or {affwild2.LABELS_FOLDER}/ "
                          f"but no {layout.PARAMS_FILENAME}: it may be real data; choose "
                          "another out_dir")
  for d in (affwild2.IMAGES_FOLDER, affwild2.LABELS_FOLDER):
    shutil.rmtree(out / d, ignore_errors=True)
  scans = Scans.load(scans_path)
  pools = split_pools(len(scans.classes), seed)
  counts = {"train": num_train_videos, "validation": num_val_videos, "test": num_test_videos}
  videos = []
  for code, (split, count) in enumerate(counts.items()):
    # Each split has its own streams: adding test videos changes no other split's bytes.
    lengths = np.random.default_rng([seed, 1, code]).uniform(0.75, 1.25, count) * (
        frames_per_video)
    for index in range(count):
      name = f"digits_{SPLIT_NAMES[split]}_{index:03d}"
      videos.append(write_video(out, name, split, scans, pools[split],
                                max(int(lengths[index]), 1), (seed, 2, code, index)))
  summary = {"splits": {}}
  for split in affwild2.SPLIT_FOLDERS:
    vs = [v for v in videos if v["split"] == split]
    if not vs and split in affwild2.OPTIONAL_SPLITS:
      continue
    frames = sum(v["frames"] for v in vs)
    positives = np.sum([v["positives"] for v in vs], axis=0) if vs else np.zeros(len(LABELS))
    summary["splits"][split] = {
        "videos": len(vs), "frames": frames,
        "scans": sorted({s for v in vs for s in v["scans"]}),  # indices into the asset
        "positive_rate": {label: round(float(p) / max(frames, 1), 4)
                          for label, p in zip(LABELS, positives)}}
  out.mkdir(parents=True, exist_ok=True)
  params_path.write_text(json.dumps({"params": params, "summary": summary}, indent=1))
  return summary


def _define_flags() -> None:
  flags.DEFINE_string("out_dir", None, "Dataset root to write (cropped_aligned/, "
                      "AU_Detection_Challenge/, generator.json).", required=True)
  flags.DEFINE_integer("seed", 0, "Seed: the same seed gives the same bytes.")
  flags.DEFINE_integer("num_train_videos", 40, "Videos in Train_Set.")
  flags.DEFINE_integer("num_val_videos", 10, "Videos in Validation_Set.")
  flags.DEFINE_integer("num_test_videos", 10, "Videos in Test_Set (the labelled split "
                       "nothing selects on).")
  flags.DEFINE_integer("frames_per_video", 80, "Mean video length.")


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}; every option is a --flag")
  f = flags.FLAGS
  print(json.dumps(generate(f.out_dir, seed=f.seed, num_train_videos=f.num_train_videos,
                            num_val_videos=f.num_val_videos,
                            num_test_videos=f.num_test_videos, frames_per_video=f.frames_per_video), indent=1))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
