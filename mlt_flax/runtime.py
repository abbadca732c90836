"""The runtime that training, evaluation, prediction and the benchmarks share.

What a process needs to run the model, and nothing of the training loop:
  * `DataParallel`: the 1-D device mesh over the 'data' axis, how host batches become global
    arrays on it, how a per-device function is mapped over it (`jax.shard_map` under
    `jax.jit`, the pmap way), and how results come back to the host from every process;
  * `TrainState`, `create_train_state` and `abstract_state`: the state a checkpoint holds and
    its shape, the target of every restore;
  * `predict_step` / `predict_fn`: uint8 frames -> per-AU probabilities, per device and mapped;
  * `load_run`: a run's config (the library's defaults for fields added since), variables
    and step from its workdir, restored without the training loop;
  * `infer` / `collect`: batch inference over a stream of host batches, the device kept busy
    while the host prepares the next batch, and the rows of all processes gathered.
"""

import dataclasses
import json
import pathlib
from typing import Any, Callable, Iterator

import flax
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np

from mlt_flax import augment
from mlt_flax import aus
from mlt_flax import checkpoints
from mlt_flax import configuration
from mlt_flax import input_pipeline
from mlt_flax import models
from mlt_flax import optim

AXIS = "data"  # the mesh axis the batch is split over
VIDEO_NAME_BYTES = 256  # video names travel between processes as fixed-width bytes


# ------------------------------------------------------------------------------ the device mesh


class DataParallel:
  """The 1-D mesh over `devices` (default: all devices of all processes) and its layouts."""

  def __init__(self, devices=None):
    devices = jax.devices() if devices is None else devices
    self.mesh = jax.sharding.Mesh(np.asarray(devices), (AXIS,))
    self.replicated = jax.NamedSharding(self.mesh, jax.P())
    self.batch_sharding = jax.NamedSharding(self.mesh, jax.P(AXIS))
    self.num_processes = len({d.process_index for d in devices})

  def local_batch_size(self, global_batch_size: int, field: str = "train.batch_size") -> int:
    """This process's share of a global batch, which must split evenly over the devices."""
    if global_batch_size % self.mesh.size:
      raise configuration.ConfigError(
          f"config.{field} = {global_batch_size}: expected a multiple of the "
          f"device count {self.mesh.size}")
    return global_batch_size // self.num_processes

  def to_global(self, host_batch: dict) -> dict:
    """This process's numpy batch -> global arrays sharded over 'data' (numeric fields)."""
    return {k: jax.make_array_from_process_local_data(self.batch_sharding, v)
            for k, v in host_batch.items() if v.dtype.kind in "biuf"}

  def map(self, per_device_fn: Callable, *, out_specs, donate_state: bool = False):
    """fn(state, batch) written per device -> jitted over the mesh; state replicated."""
    mapped = jax.shard_map(per_device_fn, mesh=self.mesh, in_specs=(jax.P(), jax.P(AXIS)),
                           out_specs=out_specs)
    return jax.jit(mapped, donate_argnums=(0,) if donate_state else ())

  def local_rows(self, x: jax.Array) -> np.ndarray:
    """The rows of a batch-sharded global array that this process fed, in its order."""
    shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
    return np.concatenate([np.asarray(s.data) for s in shards])

  def all_rows(self, local: np.ndarray) -> np.ndarray:
    """Every process's equally shaped `local` rows, concatenated in process order."""
    if self.num_processes == 1:
      return local
    return np.asarray(multihost_utils.process_allgather(local, tiled=True))


# ------------------------------------------------------------------- model and its train state


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 (): updates applied so far
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array  # uint32 (2,): raw key data, so checkpoints hold plain arrays
  nonfinite_steps: jax.Array  # int32 (): steps skipped for a NaN/Inf loss or gradient


def au_names(config: ml_collections.ConfigDict) -> list[str]:
  """The model's AUs, in the order of its outputs."""
  return aus.names(aus.label_space(config.data.label_space))


def scored_aus(config: ml_collections.ConfigDict,
               dataset: str | None = None) -> tuple[np.ndarray, list[str]]:
  """(columns, names) of the model's AUs that `dataset` (default the evaluation dataset)
  annotates: the AUs an F1 is averaged over. A 17-AU pretraining model evaluated on
  Aff-Wild2 is scored on Aff-Wild2's 12; the other 5 would only add zeros to the mean."""
  annotated = set(aus.label_space(dataset or config.data.eval_dataset))
  model_aus = aus.label_space(config.data.label_space)
  columns = np.array([i for i, a in enumerate(model_aus) if a in annotated], int)
  return columns, [aus.names(model_aus)[i] for i in columns]


def build_model(config: ml_collections.ConfigDict, *, training: bool = False):
  """The MLT of a config; in training, BatchNorm averages its statistics over AXIS."""
  return models.build_model(config.model, len(au_names(config)),
                            bn_axis_name=AXIS if training else None)


def build(config: ml_collections.ConfigDict, steps_per_epoch: int):
  """(model for training, lr schedule per group, optimiser) of a config."""
  num_labels = len(au_names(config))
  lr_fns = optim.schedules(config, steps_per_epoch, models.num_patches(config.model),
                           num_labels)
  return build_model(config, training=True), lr_fns, optim.make_optimizer(config, lr_fns)


def create_train_state(rng_seed: int, model, tx, image_size: int) -> TrainState:
  """A fresh state (pure: run it under jit with out_shardings to be born where it lives)."""
  init_rng, state_rng = jax.random.split(jax.random.key(rng_seed))
  dummy = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  variables = model.init(init_rng, dummy, train=False)
  return TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                    batch_stats=variables["batch_stats"], opt_state=tx.init(variables["params"]),
                    rng=jax.random.key_data(state_rng),
                    nonfinite_steps=jnp.zeros((), jnp.int32))


def abstract_state(config: ml_collections.ConfigDict, dp: DataParallel,
                   steps_per_epoch: int = 1):
  """ShapeDtypeStructs (replicated shardings) of the train state: the target of a restore."""
  model, _, tx = build(config, steps_per_epoch)
  shapes = jax.eval_shape(lambda: create_train_state(config.seed, model, tx,
                                                     config.model.image_size))
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=dp.replicated),
                      shapes)


def variables_of(state: TrainState) -> dict:
  """What inference needs of a train state."""
  return {"params": state.params, "batch_stats": state.batch_stats}


# ----------------------------------------------------------------------------------- inference


def predict_step(variables, batch, *, model, config):
  """Per device: uint8 frames (b, H, W, 3) at native size -> probabilities (b, L)."""
  images = augment.preprocess(batch["image"], config.model.image_size)
  return jax.nn.sigmoid(model.apply(variables, images, train=False))


def predict_fn(config: ml_collections.ConfigDict, dp: DataParallel, model=None):
  """fn(variables, global batch) -> global probabilities (B, L), batch-sharded. One compile
  per batch shape; every caller (evaluation, predict, benchmarks) builds it here."""
  model = model or build_model(config)
  return dp.map(lambda v, b: predict_step(v, b, model=model, config=config),
                out_specs=jax.P(AXIS))


def infer(predict, variables, batches: Iterator[dict],
          dp: DataParallel) -> Iterator[tuple[dict, np.ndarray]]:
  """(host batch, its probabilities (b, L) as numpy) for every fixed-shape host batch.

  Each batch is dispatched before the previous one is read back, so the device computes
  while the host fetches and decodes. Only the batch's 'image' goes to the devices.
  """
  pending = None
  for batch in batches:
    probs = predict(variables, dp.to_global({"image": batch["image"]}))
    if pending is not None:
      yield pending[0], dp.local_rows(pending[1])
    pending = (batch, probs)
  if pending is not None:
    yield pending[0], dp.local_rows(pending[1])


def collect(predict, variables, batches: Iterator[dict], dp: DataParallel) -> dict:
  """Probabilities for every valid row of evaluation batches, from every process.

  batches: each process's share, {'image', 'labels', 'valid', 'face', 'video' (bytes),
  'frame'}, the same number of equally shaped batches on every process. Returns
  {'probs': (N, L), 'labels': (N, L), 'face': (N,) bool, 'video': (N,) str, 'frame': (N,)
  int}, rows sorted by (video, frame), identical on every process.
  """
  out = {"probs": [], "labels": [], "valid": [], "face": [], "video": [], "frame": []}
  for batch, probs in infer(predict, variables, batches, dp):
    names = [v if isinstance(v, bytes) else b"" for v in batch["video"]]  # b"": padding
    if max(map(len, names)) > VIDEO_NAME_BYTES:
      raise ValueError(f"a video name is longer than {VIDEO_NAME_BYTES} bytes: "
                       f"{max(names, key=len)[:80]!r}...")
    names = np.array(names, f"S{VIDEO_NAME_BYTES}")
    rows = {"probs": probs, "labels": batch["labels"], "valid": batch["valid"],
            "face": batch["face"],
            "video": names.view(np.uint8).reshape(len(names), VIDEO_NAME_BYTES),
            "frame": batch["frame"]}
    for k, v in rows.items():
      out[k].append(dp.all_rows(np.asarray(v)))
  if not out["probs"]:
    raise ValueError("the split has no frames")
  arrays = {k: np.concatenate(v) for k, v in out.items()}
  keep = arrays.pop("valid").astype(bool)
  arrays = {k: v[keep] for k, v in arrays.items()}
  arrays["video"] = np.array([bytes(r).rstrip(b"\0").decode() for r in arrays["video"]],
                             object)
  arrays["face"] = arrays["face"].astype(bool)
  order = np.lexsort((arrays["frame"], arrays["video"].astype(str)))
  return {k: v[order] for k, v in arrays.items()}


# ------------------------------------------------------------------------------- loading a run


def load_config(workdir) -> ml_collections.ConfigDict:
  """The config a run was trained with (<workdir>/config.json).

  Fields added to the project since the run take their library defaults
  (`configuration.defaults()`).
  """
  path = pathlib.Path(workdir) / "config.json"
  if not path.exists():
    raise FileNotFoundError(f"{path} not found: is {workdir} the workdir of a training run?")
  try:
    stored = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from e
  config = configuration.defaults()
  _merge(config, stored)
  return config


def _merge(config: ml_collections.ConfigDict, stored: dict) -> None:
  for key, value in stored.items():
    if isinstance(value, dict) and key in config and isinstance(config[key],
                                                                 ml_collections.ConfigDict):
      _merge(config[key], value)
    else:
      with config.ignore_type():
        config[key] = tuple(value) if isinstance(value, list) else value


@dataclasses.dataclass
class Run:
  """A trained run, ready for inference: its config, model variables and checkpoint step."""
  workdir: pathlib.Path
  config: ml_collections.ConfigDict
  variables: dict  # {'params', 'batch_stats'}, replicated on the mesh it was loaded for
  step: int

  @property
  def au_names(self) -> list[str]:
    return au_names(self.config)


def load_run(workdir, checkpoint: str = "best", dp: DataParallel | None = None) -> Run:
  """The run in `workdir` at checkpoint 'best' (by validation mean F1), 'latest' or a step."""
  dp = dp or DataParallel()
  config = load_config(workdir)
  mngr = checkpoints.manager(workdir, config)
  try:
    step = checkpoints.select_step(mngr, checkpoint)
    state = checkpoints.restore(mngr, step, abstract_state(config, dp))
  finally:
    mngr.close()
  return Run(pathlib.Path(workdir), config, variables_of(state), step)


def predict_split(run: "Run", split: str, dp: DataParallel, *,
                  dataset: str | None = None, predict=None, frame_stride: int | None = None,
                  faceless: bool = False) -> dict:
  """Probabilities for the frames of a split (`input_pipeline.eval_batches` picks which:
  every `frame_stride`-th, default the config's; with `faceless`, also the labelled frames
  without a face crop), from every process.

  Returns {'probs': (N, L), 'labels': (N, L), 'face': (N,) bool, 'video': (N,) str,
  'frame': (N,) int}, rows sorted by (video, frame). Faceless rows hold the model's output
  on a placeholder: give them the prediction the challenge's submission gets
  (`metrics.fill_faceless`) before scoring.
  """
  predict = predict or predict_fn(run.config, dp)
  batches = input_pipeline.eval_batches(
      run.config, local_batch_size=dp.local_batch_size(run.config.eval.batch_size,
                                                       "eval.batch_size"),
      dataset=dataset, split=split, frame_stride=frame_stride, faceless=faceless,
      process_index=jax.process_index() if dp.num_processes > 1 else 0,
      process_count=dp.num_processes)
  return collect(predict, run.variables, batches, dp)
