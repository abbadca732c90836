"""The tf.data input pipeline over TFDS-built AU datasets.

The host only reads records and decodes JPEGs: frames travel to the devices as uint8 at their
native size, and resizing and augmentation run there, inside the jitted step
(mlt_flax/augment.py), where they are nearly free (docs/performance.md, "Input pipeline": host-side resizing is the cost).

Training stream: each dataset's training split -> keep every k-th frame
-> drop frames with no valid label -> labels mapped to the model's label space (-1 where the
dataset does not code an AU) -> a seeded shuffle of each epoch (file order, then a buffer
of config.data.shuffle_buffer frames, 0 = the whole epoch) -> repeat -> mixture with configured weights ->
skip the examples of the steps already done (before decoding: a resumed run sees the very
stream an uninterrupted one would) -> this process's share -> decode -> batch (drop
remainder) -> prefetch.

Evaluation: every frame of the (strided) split exactly once, the last batch padded and masked
with `valid`, each frame carrying its `video` index and `frame` number so that predictions
can be put in (video, frame) order.
"""

import dataclasses
import importlib
import json
import os
import pathlib
from typing import Iterator

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from mlt_flax import aus
from mlt_flax import losses

# TFDS name -> the module that registers its builder.
DATASET_MODULES = {
    "abaw3_au": "mlt_flax.data.abaw3_au",
    "bp4d": "mlt_flax.data.bp4d",
    "disfa": "mlt_flax.data.disfa",
}
STATS_VERSION = 2  # bump when the cached statistics change meaning


def builder(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
  """The built TFDS dataset `name` in data_dir; a clear error if it is unknown or not built."""
  if name not in DATASET_MODULES:
    raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASET_MODULES)}")
  importlib.import_module(DATASET_MODULES[name])
  b = tfds.builder(name, data_dir=data_dir)
  if not b.is_prepared():
    folder = pathlib.Path(data_dir) / name
    older = sorted(v.name for v in folder.glob("*.*.*") if v.name != str(b.version)) if (
        folder.is_dir()) else []
    if older:
      raise FileNotFoundError(
          f"dataset {name!r} in {data_dir} was built by an older mlt_flax (version "
          f"{', '.join(older)}); this one reads version {b.version} "
          f"({b.RELEASE_NOTES.get(str(b.version), '')}) Rebuild it: `python -m "
          f"mlt_flax.data.build --dataset={name} --manual_dir=... --data_dir={data_dir}` "
          f"(the old build in {folder} can then be deleted)")
    raise FileNotFoundError(
        f"dataset {name!r} is not built in {data_dir}; build it with `python -m "
        f"mlt_flax.data.build --dataset={name} --manual_dir=... --data_dir={data_dir}`")
  return b


def label_index(dataset: str, label_space: str) -> np.ndarray:
  """For each AU of the label space, its column in the dataset's labels, or -1 if absent."""
  ds_aus = aus.label_space(dataset)
  return np.array([ds_aus.index(a) if a in ds_aus else -1
                   for a in aus.label_space(label_space)], np.int32)


def _map_labels(labels_int8, index):
  """(..., L_dataset) int8 -> (..., L_space) float32, -1 where the dataset lacks the AU."""
  labels = tf.cast(labels_int8, tf.float32)
  gathered = tf.gather(labels, tf.maximum(index, 0), axis=-1)
  return tf.where(index >= 0, gathered, -tf.ones_like(gathered))


def _keep(example, frame_stride: int, require_label: bool, faces_only: bool):
  keep = tf.equal((example["frame"] - 1) % frame_stride, 0)  # frames 1, 1+k, 1+2k, ...
  if require_label:
    keep = tf.logical_and(keep, tf.reduce_any(example["labels"] >= 0))
  if faces_only:  # frames without a face crop (face=False) are never trained on
    keep = tf.logical_and(keep, example["face"])
  return keep


def _raw_split(name: str, data_dir: str, split: str, process_index: int, process_count: int,
               frame_stride: int, require_label: bool, decode_images: bool,
               faces_only: bool = True, shuffle_seed: int | None = None) -> tf.data.Dataset:
  """The split's examples that `_keep` lets through; with `shuffle_seed`, its files in an
  order drawn anew (from that seed) each time the dataset is iterated."""
  b = builder(name, data_dir)
  for part in split.split("+"):  # TFDS split syntax: "fold1+fold2", "train[:90%]"
    if part.split("[")[0].strip() not in b.info.splits:
      raise ValueError(f"dataset {name!r} has no split {part!r} (in {split!r}); it has "
                       f"{sorted(b.info.splits)}")
  my_split = tfds.even_splits(split, n=process_count, drop_remainder=False)[process_index]
  decoders = None if decode_images else {"image": tfds.decode.SkipDecoding()}
  read_config = tfds.ReadConfig(add_tfds_id=False) if shuffle_seed is None else (
      tfds.ReadConfig(add_tfds_id=False, shuffle_seed=shuffle_seed,
                      shuffle_reshuffle_each_iteration=True))
  ds = b.as_dataset(split=my_split, shuffle_files=shuffle_seed is not None,
                    decoders=decoders, read_config=read_config)
  return ds.filter(lambda ex: _keep(ex, frame_stride, require_label, faces_only))


@dataclasses.dataclass(frozen=True)
class SplitStats:
  num_frames: int  # frames the training stream keeps (`_keep`: strided, with a valid label)
  positives: np.ndarray  # (L,) positive entries per AU of the label space
  valid: np.ndarray  # (L,) annotated (!= -1) entries per AU

  @property
  def positive_rate(self) -> np.ndarray:
    return np.divide(self.positives, self.valid, out=np.zeros(len(self.valid)),
                     where=self.valid > 0)


def mixture_positive_rate(stats: list[SplitStats], mixing_weights) -> np.ndarray:
  """f_t (L,): the positive rate of each AU in the training mixture, as `train_iterator` draws it.

  stats: one SplitStats per dataset of config.data.datasets; mixing_weights: config.data.weights.

  Derivation. `train_iterator` repeats and shuffles each dataset's stream of its n_d kept frames
  (the frames `_keep` lets through, which SplitStats counts) and mixes the streams with
  `tf.data.Dataset.sample_from_datasets(weights=w)`: each example comes from dataset d with
  probability pi_d = w_d / sum_e w_e, independently of the others. Within d, a pass of n_d
  draws yields every frame once, so a draw from d is in the long run a uniform frame of d:
  it annotates AU t with probability a_dt / n_d and is positive for t with probability
  p_dt / n_d (a_dt = `valid`, p_dt = `positives`). Per example of the mixture, then,
    P(t annotated) = sum_d pi_d a_dt / n_d,   P(t positive) = sum_d pi_d p_dt / n_d,
  and over N examples the mixture holds N times these counts (law of large numbers). The
  positive rate among the mixture's entries that annotate t is their ratio:
    f_t = [sum_d w_d p_dt / n_d] / [sum_d w_d a_dt / n_d]   (the 1 / sum w cancels),
  0 where no dataset annotates t. Each dataset enters through its per-frame rates scaled by
  its weight, not through its raw counts: pooling raw counts (sum_d p_dt / sum_d a_dt) is the
  special case w_d proportional to n_d, i.e. one stream of all frames. A single dataset gives
  p_t / a_t whatever its weight. The authors measure the same rates on their sampled mixture
  stream (`src/datasets/au_merge/generation.py`, `plfrequencies` in
  `src/dataset_statistics.py`).
  """
  w = np.asarray(mixing_weights, np.float64)
  if len(w) != len(stats) or not (w > 0).all():
    raise ValueError(f"need one positive mixing weight per dataset: {len(stats)} datasets, "
                     f"weights {list(mixing_weights)}")
  num_labels = len(stats[0].valid)
  positive = np.zeros(num_labels)
  annotated = np.zeros(num_labels)
  for s, w_d in zip(stats, w):
    if s.num_frames > 0:  # an empty dataset yields nothing to the mixture
      positive += w_d * np.asarray(s.positives, np.float64) / s.num_frames
      annotated += w_d * np.asarray(s.valid, np.float64) / s.num_frames
  return np.divide(positive, annotated, out=np.zeros(num_labels), where=annotated > 0)


def mixture_frequency_weights(stats: list[SplitStats], mixing_weights) -> np.ndarray:
  """Frequency weights w_t = T (1/f_t) / sum_k (1/f_k) (L,) (docs/recipe.md, "Loss").

  f_t is the positive rate of AU t in the training mixture (`mixture_positive_rate`, which
  derives it): config.data.weights decide how much each dataset counts.
  """
  return losses.weights_from_positive_rate(mixture_positive_rate(stats, mixing_weights))


def split_stats(name: str, data_dir: str, split: str, frame_stride: int,
                label_space: str) -> SplitStats:
  """Frame count and per-AU label counts of a training split, cached beside the dataset."""
  b = builder(name, data_dir)
  cache = pathlib.Path(b.data_dir) / f"mlt_stats_{split}_stride{frame_stride}_{label_space}.json"
  if cache.exists():
    d = json.loads(cache.read_text())
    if d.get("version") == STATS_VERSION:
      return SplitStats(d["num_frames"], np.array(d["positives"]), np.array(d["valid"]))
  index = label_index(name, label_space)
  ds = _raw_split(name, data_dir, split, 0, 1, frame_stride, True, decode_images=False)
  ds = ds.map(lambda ex: _map_labels(ex["labels"], index)).batch(4096)
  labels = np.concatenate([x for x in tfds.as_numpy(ds)] or [np.zeros((0, len(index)))])
  stats = SplitStats(len(labels), (labels == 1).sum(0), (labels >= 0).sum(0))
  # Written whole or not at all (another process may read the cache meanwhile).
  tmp = cache.with_name(f"{cache.name}.tmp-{os.getpid()}")
  tmp.write_text(json.dumps({"version": STATS_VERSION, "num_frames": stats.num_frames,
                             "positives": stats.positives.tolist(),
                             "valid": stats.valid.tolist()}))
  os.replace(tmp, cache)
  return stats


def train_split_stats(config: ml_collections.ConfigDict) -> list[SplitStats]:
  """split_stats of each of config.data's training datasets, in order."""
  d = config.data
  return [split_stats(n, d.data_dir, split, d.frame_stride, d.label_space)
          for n, split in zip(d.datasets, d.train_splits)]


def steps_per_epoch(num_frames: int, batch_size: int) -> int:
  """Training steps in one pass over num_frames frames at a global batch_size (at least 1)."""
  return max(num_frames // batch_size, 1)


def has_partial_labels(config: ml_collections.ConfigDict) -> bool:
  """Whether some dataset lacks some AU of the label space (then mixup is off)."""
  return any((label_index(n, config.data.label_space) < 0).any() for n in config.data.datasets)


def decode_frame(data: tf.Tensor) -> tf.Tensor:
  """A frame's JPEG or PNG bytes -> (H, W, 3) uint8, the pixels PIL and OpenCV decode.

  JPEGs use libjpeg's accurate integer IDCT: TensorFlow's default (the fast one) differs from
  it by up to 4 levels, and `predict`, which reads a user's frames with PIL, would then score
  other pixels than evaluation did (decisions flip at a tuned threshold).
  """
  return tf.cond(tf.io.is_jpeg(data),
                 lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
                 lambda: tf.io.decode_png(data, channels=3))


def _decode(example, index, frame_size: int):
  """Decodes the frame; resizes on the host only frames not already frame_size (batching)."""
  image = decode_frame(example["image"])
  image = tf.cond(
      tf.reduce_all(tf.shape(image)[:2] == frame_size), lambda: image,
      lambda: tf.cast(tf.round(tf.image.resize(image, (frame_size, frame_size))), tf.uint8))
  image.set_shape((frame_size, frame_size, 3))
  return {"image": image, "labels": _map_labels(example["labels"], index)}


def _rows(batch: dict, start: int, size: int) -> dict:
  """Rows [start, start + size) of every field of a batch."""
  return {k: v[start:start + size] for k, v in batch.items()}


def train_iterator(config: ml_collections.ConfigDict, *, local_batch_size: int,
                   start_step: int = 0, process_index: int = 0, process_count: int = 1,
                   ) -> Iterator[dict[str, np.ndarray]]:
  """Endless training batches for this process: {'image': uint8 (b, H, W, 3), 'labels': (b, L)}.

  Deterministic given config.seed and start_step: the batch of global step s is the same
  whether the run started at 0 or resumed at s, and the same set of frames whatever the
  number of processes (each reads the encoded stream and decodes only its share).
  """
  d = config.data
  if len(d.weights) != len(d.datasets):
    raise ValueError(f"config.data.weights has {len(d.weights)} entries for "
                     f"{len(d.datasets)} datasets in config.data.datasets")
  parts = []
  for i, (name, split) in enumerate(zip(d.datasets, d.train_splits)):
    index = label_index(name, d.label_space)
    seed = config.seed * 1000 + i  # one stream per dataset, all fixed by config.seed
    ds = _raw_split(name, d.data_dir, split, 0, 1, d.frame_stride, True,
                    decode_images=False, shuffle_seed=seed)
    ds = ds.map(lambda ex, index=index: {"image": ex["image"], "labels": ex["labels"],
                                         "index": index})
    # Each epoch is a fresh permutation: files in a new order, then a shuffle buffer that
    # restarts with every epoch (shuffle before repeat). With the buffer holding the whole
    # epoch (data.shuffle_buffer = 0) the permutation is uniform, as the authors' reshuffle
    # of their whole training list; all of it drawn from `seed`, so a resumed run sees the
    # very stream an uninterrupted one would.
    buffer = d.shuffle_buffer or max(
        split_stats(name, d.data_dir, split, d.frame_stride, d.label_space).num_frames, 1)
    parts.append(ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True).repeat())
  if len(parts) == 1:
    ds = parts[0]
  else:
    ds = tf.data.Dataset.sample_from_datasets(parts, weights=list(d.weights),
                                              seed=config.seed, stop_on_empty_dataset=False)
  # The global stream is the same whatever the number of processes: global batch s is its
  # examples [s G, (s + 1) G), and process p decodes the block [p b, (p + 1) b) of it, so
  # device d holds the same frames in a run of 1 x 4 devices as in one of 2 x 2.
  global_batch = local_batch_size * process_count
  ds = ds.skip(start_step * global_batch)  # still encoded: cheap
  ds = ds.batch(global_batch, drop_remainder=True).map(
      lambda b: _rows(b, process_index * local_batch_size, local_batch_size)).unbatch()
  ds = ds.map(lambda ex: _decode(ex, ex["index"], d.frame_size),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(local_batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  return iter(tfds.as_numpy(ds))


def _slice_count(name: str, data_dir: str, split: str, frame_stride: int, process_index: int,
                 process_count: int, faces_only: bool) -> int:
  """Frames of one process's slice of a split (strided), cached beside the dataset."""
  b = builder(name, data_dir)
  cache = pathlib.Path(b.data_dir) / "mlt_slice_counts.json"
  counts = json.loads(cache.read_text()) if cache.exists() else {}
  key = (f"{split}/stride{frame_stride}/{process_index}of{process_count}" +
         ("" if faces_only else "/with_faceless"))
  if key not in counts:
    ds = _raw_split(name, data_dir, split, process_index, process_count, frame_stride, False,
                    decode_images=False, faces_only=faces_only)
    counts[key] = int(ds.reduce(0, lambda n, _: n + 1))
    cache.write_text(json.dumps(counts))
  return counts[key]


def eval_batches(config: ml_collections.ConfigDict, *, local_batch_size: int,
                 dataset: str | None = None, split: str | None = None,
                 process_index: int = 0, process_count: int = 1,
                 frame_stride: int | None = None, faceless: bool = False,
                 ) -> Iterator[dict[str, np.ndarray]]:
  """Every frame of a split with a face crop, every `frame_stride`-th (default
  config.data.frame_stride), exactly once, in fixed-shape batches; with `faceless`, also the
  labelled frames without one (face=False, their image a black placeholder).

  Yields {'image': uint8 (b, H, W, 3), 'labels': (b, L) in the label space, 'valid': (b,)
  bool (False on padding), 'face': (b,) bool, 'video': (b,) bytes, 'frame': (b,) int32}.
  All-(-1) frames are kept (valid, with no label to score): they still get predictions for
  smoothing. Every process yields the same number of batches (the largest slice's; the
  others are padded with all-invalid batches), since each batch is one collective step on
  all devices.
  """
  d = config.data
  name, split = dataset or d.eval_dataset, split or d.eval_split
  stride = frame_stride or d.frame_stride
  index = label_index(name, d.label_space)
  num_batches = max(
      -(-_slice_count(name, d.data_dir, split, stride, p, process_count, not faceless) //
        local_batch_size) for p in range(process_count))
  ds = _raw_split(name, d.data_dir, split, process_index, process_count, stride, False,
                  decode_images=False, faces_only=not faceless)
  ds = ds.map(lambda ex: {**_decode(ex, index, d.frame_size), "face": ex["face"],
                          "video": ex["video"], "frame": ex["frame"]},
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(local_batch_size).prefetch(tf.data.AUTOTUNE)
  empty = {k: np.zeros((0,) + tuple(spec.shape[1:]),
                       object if spec.dtype == tf.string else spec.dtype.as_numpy_dtype)
           for k, spec in ds.element_spec.items()}
  batches = iter(tfds.as_numpy(ds))
  for _ in range(num_batches):
    batch = next(batches, None)
    if batch is None:  # this process's slice is done; the others' are not
      batch = dict(empty)
    n = len(batch["frame"])
    batch["valid"] = np.arange(local_batch_size) < n
    yield {k: _pad(v, local_batch_size) for k, v in batch.items()}


def _pad(x: np.ndarray, size: int) -> np.ndarray:
  if len(x) == size:
    return x
  pad = np.zeros((size - len(x),) + x.shape[1:], x.dtype)
  return np.concatenate([x, pad])
