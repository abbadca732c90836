"""predict's backend protocol, the batching every backend shares, and the ONNX Runtime backend.

A backend is what turns face crops into per-AU probabilities:
  config, au_names, step, frame_size, batch_size   what the outputs and batching need
  shipped            the thresholds and window evaluate scored and the run/export ships, or
                     None; `shipped_where` says which file holds them
  infer(batches)     (uint8 (B, S, S, 3) images, n real rows) per batch -> float32 (n, L)
                     probabilities of each, in order (B fixed: the last batch is padded)
  attention_maps(crops)  key -> (probs (L,), attention (L, h, w)), or {} where it cannot
  split_predictions(split)  every frame of a split of the run's dataset, or a one-line
                     ValueError where the backend has no dataset

`Backend.run` feeds a stream of Frame records through `infer` in fixed-size batches, the
face finder's decoding running in a background thread ahead of the backend.

Two backends: `JaxBackend` (mlt_flax.predict.jax_backend: a run's checkpoint, compiled with
JAX, attention maps too) and `OnnxBackend` (here: an export run by ONNX Runtime). This module
and the ONNX backend import no JAX and no TensorFlow.
"""

import abc
import pathlib
import queue
import threading
from typing import Iterable, Iterator

import cv2
import numpy as np

from mlt_flax import faces
from mlt_flax import serving
from mlt_flax.predict import outputs

PREFETCH_BATCHES = 2  # batches decoded ahead of the backend


def prefetch(items: Iterator, size: int = PREFETCH_BATCHES) -> Iterator:
  """Runs `items` in a background thread, `size` ahead; its exceptions re-raised here."""
  q: queue.Queue = queue.Queue(maxsize=size)
  done = object()

  def produce():
    try:
      for item in items:
        q.put(item)
      q.put(done)
    except BaseException as e:  # pylint: disable=broad-except
      q.put(e)

  threading.Thread(target=produce, daemon=True).start()
  while (item := q.get()) is not done:
    if isinstance(item, BaseException):
      raise item
    yield item


class Backend(abc.ABC):
  """What predict needs of a model. Subclasses set the attributes in their __init__."""
  config: object  # ml_collections.ConfigDict: the run's config
  au_names: list[str]
  step: int  # the checkpoint step
  frame_size: int  # face crops are (frame_size, frame_size, 3)
  batch_size: int  # this process's batch
  shipped: dict | None = None
  shipped_where: str = "the run"
  _warned_heatmaps = False

  @abc.abstractmethod
  def infer(self, batches: Iterable[tuple[np.ndarray, int]]) -> Iterator[np.ndarray]:
    """(uint8 (B, S, S, 3) images, n) per batch -> float32 (n, L): the probabilities of its
    first n rows (the rest is padding), one array per batch, in order."""

  def attention_maps(self, crops: dict) -> dict:
    """key -> (probs (L,), attention (L, h, w)) of the crops; {} (and one warning) where the
    backend has no attention output."""
    if crops and not self._warned_heatmaps:
      print(f"warning: {type(self).__name__} has no attention output: no heatmaps (predict "
            "--workdir=RUN draws them)")
      self._warned_heatmaps = True
    return {}

  def split_predictions(self, split: str) -> list[outputs.VideoPrediction]:
    """Every labelled frame of a split of the run's dataset, one prediction per video."""
    raise ValueError(f"--input=tfds:{split}: a TFDS split needs the run (--workdir); "
                     f"{type(self).__name__} takes videos, photos and frame folders")

  def _fit(self, crop: np.ndarray) -> np.ndarray:
    if crop.shape[:2] != (self.frame_size, self.frame_size):
      crop = cv2.resize(crop, (self.frame_size, self.frame_size), interpolation=cv2.INTER_AREA)
    return crop

  def _batches(self, frames: Iterator[faces.Frame], rows: outputs.Rows, crops: dict,
               heatmap_frames) -> Iterator[dict]:
    """Fixed-shape batches of face crops: {'image': (B, S, S, 3), 'slot': (b,) row indices};
    the last one zero-padded to B."""
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

  def run(self, frames: Iterator[faces.Frame], name: str, heatmap_frames=(),
          source=None) -> outputs.VideoPrediction:
    """Probabilities for a stream of Frame records; decoding overlaps the backend's work."""
    rows, crops, slots = outputs.Rows(), {}, []

    def images():
      for b in prefetch(self._batches(frames, rows, crops, heatmap_frames)):
        slots.append(b["slot"])
        yield b["image"], len(b["slot"])

    results = list(self.infer(images()))
    probs = np.full((len(rows.frames), len(self.au_names)), np.nan, np.float32)
    for slot, p in zip(slots, results):
      probs[slot] = p
    return rows.prediction(name, probs, crops, None if source is None else pathlib.Path(source))


class OnnxBackend(Backend):
  """An export folder (mlt_flax.export) run by ONNX Runtime, on the CPU.

  Batches are the JAX path's (config.eval.batch_size, decoded in a background thread while
  ONNX Runtime computes); padding rows of the last batch are not computed. No attention
  output: no heatmaps; no dataset: no tfds: input.
  """

  def __init__(self, model_dir, *, threads: int | None = None):
    self.model = serving.ExportedModel.load(model_dir, threads=threads)
    self.config = self.model.config
    self.au_names = self.model.au_names
    self.step = self.model.step
    self.frame_size = self.model.frame_size
    self.batch_size = int(self.config.eval.batch_size)
    self.shipped = self.model.shipped
    self.shipped_where = str(self.model.folder / serving.METADATA_FILE)

  def infer(self, batches):
    for images, n in batches:
      yield self.model(images[:n])
