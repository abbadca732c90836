"""Training and evaluation: pure init/step functions and the `train_and_evaluate` loop.

The train step is written per device, the pmap way: it sees its shard of the global batch,
averages gradients, losses and BatchNorm statistics over the named 'data' axis with
`lax.pmean`, and applies the same update everywhere. It is mapped over a 1-D mesh of all
devices of all processes with `jax.shard_map` under `jax.jit` (what `jax.pmap` itself is
since JAX 0.10); the state is replicated global arrays, donated to the step, which Orbax saves
as they are.
"""

import functools
import hashlib
import json
import pathlib
import signal
import sys
import time
from typing import Any

from absl import logging
from clu import metric_writers
from clu import metrics
from clu import periodic_actions
import flax
import jax
from jax import lax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mlt_flax import augment
from mlt_flax import aus
from mlt_flax import checkpoints
from mlt_flax import configuration
from mlt_flax import input_pipeline
from mlt_flax import losses
from mlt_flax import models
from mlt_flax import optim

AXIS = "data"  # the mesh axis the batch is split over


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 (): updates applied so far
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array  # uint32 (2,): raw key data, so checkpoints hold plain arrays
  nonfinite_steps: jax.Array  # int32 (): steps skipped for a NaN/Inf loss or gradient


@flax.struct.dataclass
class PooledCounts(metrics.Metric):
  """Per-AU TP/FP/FN pooled over every frame seen; compute() -> per-AU F1 (T,)."""
  tp: jax.Array
  fp: jax.Array
  fn: jax.Array

  @classmethod
  def from_model_output(cls, probs, labels, valid, threshold, **_):
    """probs, labels (B, T); labels -1 = not annotated; valid (B,) masks padding."""
    scored = (labels >= 0) & valid[:, None]
    pred, true = (probs >= threshold) & scored, (labels == 1) & scored
    return cls(tp=(pred & true).sum(0), fp=(pred & ~true).sum(0), fn=(~pred & true).sum(0))

  def merge(self, other):
    return type(self)(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

  def compute(self):
    denom = 2 * self.tp + self.fp + self.fn
    return jnp.where(denom > 0, 2 * self.tp / jnp.maximum(denom, 1), 0.0)


@flax.struct.dataclass
class TrainMetrics(metrics.Collection):
  loss: metrics.Average.from_output("loss")
  bce: metrics.Average.from_output("bce")
  dice: metrics.Average.from_output("dice")
  grad_norm: metrics.Average.from_output("grad_norm")
  param_norm: metrics.LastValue.from_output("param_norm")
  lr_backbone: metrics.LastValue.from_output("lr_backbone")
  lr_patch_encoder: metrics.LastValue.from_output("lr_patch_encoder")
  lr_label_decoder: metrics.LastValue.from_output("lr_label_decoder")


def create_train_state(rng_seed: int, model, tx, image_size: int) -> TrainState:
  """A fresh state (pure: run it under jit with out_shardings to be born where it lives)."""
  init_rng, state_rng = jax.random.split(jax.random.key(rng_seed))
  dummy = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  variables = model.init(init_rng, dummy, train=False)
  return TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                    batch_stats=variables["batch_stats"], opt_state=tx.init(variables["params"]),
                    rng=jax.random.key_data(state_rng),
                    nonfinite_steps=jnp.zeros((), jnp.int32))


def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def train_step(state: TrainState, batch, *, model, tx, config, weights, lr_fns,
               allow_mixup: bool):
  """One update, per device. batch: this device's {'image': uint8, 'labels': (b, L)}.

  Returns the new state (identical on every device) and this step's metrics (averaged over
  devices). A step whose loss or gradients are not finite changes nothing but the
  `nonfinite_steps` counter; the loop then stops or goes on, per config.train.on_nonfinite.
  """
  step_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  device_key = jax.random.fold_in(step_key, lax.axis_index(AXIS))
  aug_key, dropout_key = jax.random.split(device_key)
  images, targets, mask = augment.augment(aug_key, batch["image"], batch["labels"],
                                          config.augment, config.model.image_size,
                                          allow_mixup=allow_mixup)

  def loss_fn(params):
    logits, updates = model.apply({"params": params, "batch_stats": state.batch_stats},
                                  images, train=True, rngs={"dropout": dropout_key},
                                  mutable=["batch_stats"])
    loss, terms = losses.mlt_loss(logits, targets, mask, weights, config.loss)
    return loss, (terms, updates["batch_stats"])

  # The pmap way: differentiate this device's copy of the params (marked varying over the
  # axis), so each device gets the gradient of its own shard, then average explicitly. (Left
  # invariant, shard_map would psum the gradients itself, as the transpose of a broadcast.)
  local_params = lax.pcast(state.params, AXIS, to="varying")
  (loss, (terms, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(local_params)
  grads, loss, terms, batch_stats = lax.pmean((grads, loss, terms, batch_stats), AXIS)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  finite = jnp.isfinite(loss) & _all_finite(grads)
  keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
  new_state = state.replace(
      step=state.step + 1,
      params=keep(params, state.params),
      batch_stats=keep(batch_stats, state.batch_stats),
      opt_state=keep(opt_state, state.opt_state),
      nonfinite_steps=state.nonfinite_steps + (~finite).astype(jnp.int32))
  lrs = {f"lr_{g}": (0.0 if g in config.optim.frozen else fn(state.step))
         for g, fn in lr_fns.items()}
  step_metrics = TrainMetrics.single_from_model_output(
      loss=loss, bce=terms["bce"], dice=terms["dice"], grad_norm=optax.tree.norm(grads),
      param_norm=optax.tree.norm(new_state.params), **lrs)
  return new_state, step_metrics, finite


def predict_step(variables, batch, *, model, config):
  """Per device: uint8 frames (b, H, W, 3) at native size -> probabilities (b, L)."""
  images = augment.preprocess(batch["image"], config.model.image_size)
  return jax.nn.sigmoid(model.apply(variables, images, train=False))


def eval_step(state: TrainState, batch, *, model, config):
  """Per device: probabilities (b, L) and the F1 counts pooled over all devices."""
  probs = predict_step({"params": state.params, "batch_stats": state.batch_stats}, batch,
                       model=model, config=config)
  counts = PooledCounts.from_model_output(probs, batch["labels"], batch["valid"],
                                          config.eval.threshold)
  return probs, jax.tree.map(lambda x: lax.psum(x, AXIS), counts)


class DataParallel:
  """The 1-D mesh over all devices of all processes, and how arrays are laid on it."""

  def __init__(self, devices=None):
    devices = jax.devices() if devices is None else devices
    self.mesh = jax.sharding.Mesh(np.asarray(devices), (AXIS,))
    self.replicated = jax.NamedSharding(self.mesh, jax.P())
    self.batch_sharding = jax.NamedSharding(self.mesh, jax.P(AXIS))

  def local_batch_size(self, global_batch_size: int, field: str = "train.batch_size") -> int:
    """This process's share of a global batch, which must split evenly over the devices."""
    if global_batch_size % self.mesh.size:
      raise configuration.ConfigError(
          f"config.{field} = {global_batch_size}: expected a multiple of the "
          f"device count {self.mesh.size}")
    return global_batch_size // jax.process_count()

  def to_global(self, host_batch: dict) -> dict:
    """This process's numpy batch -> global arrays sharded over 'data' (numeric fields)."""
    return {k: jax.make_array_from_process_local_data(self.batch_sharding, v)
            for k, v in host_batch.items() if v.dtype.kind in "biuf"}

  def map(self, fn, out_specs, donate_state: bool):
    mapped = jax.shard_map(fn, mesh=self.mesh, in_specs=(jax.P(), jax.P(AXIS)),
                           out_specs=out_specs)
    return jax.jit(mapped, donate_argnums=(0,) if donate_state else ())


def param_digest(params) -> str:
  """SHA-256 of this process's copy of the (replicated) parameters: equal copies, equal hash."""
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(params):
    h.update(np.ascontiguousarray(leaf.addressable_data(0)).tobytes())
  return h.hexdigest()[:16]


def build(config: ml_collections.ConfigDict, steps_per_epoch: int):
  """The model (BatchNorm synced over AXIS), the lr schedules and the optimiser of a config."""
  num_labels = len(aus.label_space(config.data.label_space))
  model = models.build_model(config.model, num_labels, bn_axis_name=AXIS)
  lr_fns = optim.schedules(config, steps_per_epoch, models.num_patches(config.model),
                           num_labels)
  return model, lr_fns, optim.make_optimizer(config, lr_fns)


def abstract_state(config: ml_collections.ConfigDict, dp: "DataParallel",
                   steps_per_epoch: int = 1):
  """ShapeDtypeStructs (replicated shardings) of the train state: the target of a restore."""
  model, _, tx = build(config, steps_per_epoch)
  shapes = jax.eval_shape(lambda: create_train_state(config.seed, model, tx,
                                                     config.model.image_size))
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=dp.replicated),
                      shapes)


def _write_json(path: pathlib.Path, obj) -> None:
  if jax.process_index() == 0:
    path.write_text(json.dumps(obj, indent=1, default=float))


class _Preemption:
  """Turns SIGTERM into a flag the loop checks between steps."""

  def __init__(self):
    self.requested = False
    self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def restore(self):
    signal.signal(signal.SIGTERM, self._previous)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains per `config` in `workdir`, resuming from its latest checkpoint if any.

  Returns the final summary (also written to <workdir>/summary.json).
  """
  configuration.validate(config)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  dp = DataParallel()
  local_batch = dp.local_batch_size(config.train.batch_size)
  eval_local_batch = dp.local_batch_size(config.eval.batch_size, "eval.batch_size")
  label_names = aus.names(aus.label_space(config.data.label_space))
  num_labels = len(label_names)

  stats = [input_pipeline.split_stats(n, config.data.data_dir, split,
                                      config.data.frame_stride, config.data.label_space)
           for n, split in zip(config.data.datasets, config.data.train_splits)]
  train_frames = sum(s.num_frames for s in stats)
  weights = input_pipeline.pooled_frequency_weights(stats)
  steps_per_epoch = max(train_frames // config.train.batch_size, 1)
  total_steps = config.train.num_steps or int(config.train.num_epochs * steps_per_epoch)
  allow_mixup = not input_pipeline.has_partial_labels(config)

  model, lr_fns, tx = build(config, steps_per_epoch)
  init = functools.partial(create_train_state, model=model, tx=tx,
                           image_size=config.model.image_size)
  abstract = abstract_state(config, dp, steps_per_epoch)

  mngr = checkpoints.manager(workdir, config)
  restored = checkpoints.restore_latest(mngr, abstract)
  init_report = None
  if restored is not None:
    state, start_step = restored
    print(f"resuming from checkpoint step {start_step} in {mngr.directory}")
  else:
    start_step = 0
    state = jax.jit(lambda: init(config.seed), out_shardings=dp.replicated)()
    state, init_report = _initialise_from_elsewhere(state, config, dp)
  _write_json(workdir / "config.json", config.to_dict())

  step_fn = dp.map(functools.partial(train_step, model=model, tx=tx, config=config,
                                     weights=jnp.asarray(weights), lr_fns=lr_fns,
                                     allow_mixup=allow_mixup),
                   out_specs=(jax.P(), jax.P(), jax.P()), donate_state=True)
  eval_fn = dp.map(functools.partial(eval_step, model=model, config=config),
                   out_specs=(jax.P(AXIS), jax.P()), donate_state=False)

  def evaluate(state) -> dict:
    totals = None
    for host_batch in input_pipeline.eval_batches(
        config, local_batch_size=eval_local_batch, process_index=jax.process_index(),
        process_count=jax.process_count()):
      _, m = eval_fn(state, dp.to_global(host_batch))
      totals = m if totals is None else totals.merge(m)
    per_au = np.asarray(totals.compute()) if totals else np.zeros(num_labels)
    out = {f"val_f1/{n}": float(v) for n, v in zip(label_names, per_au)}
    out[checkpoints.BEST_METRIC] = float(per_au.mean())
    return out

  writer = metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() > 0, asynchronous=True)
  hooks = []
  if jax.process_index() == 0:
    hooks.append(periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer))
    if config.train.profile_steps:
      hooks.append(periodic_actions.Profile(num_profile_steps=config.train.profile_steps,
                                            logdir=str(workdir)))
  if init_report:
    writer.write_texts(start_step, {"init_from": json.dumps(init_report)})
  print(f"training {total_steps} steps ({steps_per_epoch}/epoch, {train_frames} frames, "
        f"global batch {config.train.batch_size}) on {jax.device_count()} devices; "
        f"workdir {workdir}")

  batches = input_pipeline.train_iterator(
      config, local_batch_size=local_batch, start_step=start_step,
      process_index=jax.process_index(), process_count=jax.process_count())
  preemption = _Preemption()
  train_metrics, history, last_eval, untrained_eval = None, [], {}, None
  untrained_path = workdir / "untrained_eval.json"
  if start_step == 0 and config.train.eval_at_start:
    untrained_eval = evaluate(state)  # the untrained model, for comparison
    writer.write_scalars(0, untrained_eval)
    _write_json(untrained_path, untrained_eval)
  elif untrained_path.exists():
    untrained_eval = json.loads(untrained_path.read_text())
  t = config.train
  step = start_step
  try:
    with metric_writers.ensure_flushes(writer):
      while step < total_steps:
        state, step_metrics, finite = step_fn(state, dp.to_global(next(batches)))
        step += 1
        if not bool(finite):
          msg = f"non-finite loss or gradient at step {step}"
          if t.on_nonfinite == "stop":
            checkpoints.wait(mngr)
            raise FloatingPointError(
                f"{msg}; stopping (config.train.on_nonfinite='stop'). The last good "
                f"checkpoint is step {mngr.latest_step()} in {mngr.directory}.")
          logging.warning("%s: update skipped (%d so far)", msg, int(state.nonfinite_steps))
        train_metrics = step_metrics if train_metrics is None else train_metrics.merge(
            step_metrics)
        for hook in hooks:
          hook(step)
        if step % t.log_every_steps == 0 or step == total_steps:
          scalars = {f"train/{k}": float(v) for k, v in train_metrics.compute().items()}
          scalars["train/nonfinite_steps"] = int(state.nonfinite_steps)
          writer.write_scalars(step, scalars)
          history.append({"step": step, **scalars})
          train_metrics = None
        do_eval = step % t.eval_every_steps == 0 or step == total_steps
        if do_eval:
          last_eval = evaluate(state)
          writer.write_scalars(step, last_eval)
        if (step % t.checkpoint_every_steps == 0 or step == total_steps or
            preemption.requested):
          checkpoints.save(mngr, step, state, config,
                           metrics={checkpoints.BEST_METRIC: last_eval[
                               checkpoints.BEST_METRIC]} if do_eval else None)
        if preemption.requested:
          checkpoints.wait(mngr)
          print(f"SIGTERM: saved checkpoint step {step}; exiting")
          sys.exit(0)
  finally:
    checkpoints.wait(mngr)
    preemption.restore()
  if not last_eval:  # resumed at the very end: nothing left to train, still report
    last_eval = evaluate(state)
  digest = param_digest(state.params)
  print(f"process {jax.process_index()}: final parameter digest {digest}")
  summary = {"steps": step, "train_frames": train_frames, "steps_per_epoch": steps_per_epoch,
             "final_eval": last_eval, "untrained_eval": untrained_eval,
             "nonfinite_steps": int(state.nonfinite_steps), "best_step": mngr.best_step(),
             "param_digest": digest, "history": history}
  _write_json(workdir / "summary.json", summary)
  print(f"done: {step} steps; validation mean F1 {last_eval.get(checkpoints.BEST_METRIC)}; "
        f"best checkpoint step {mngr.best_step()}; summary in {workdir / 'summary.json'}")
  mngr.close()
  return summary


def _initialise_from_elsewhere(state: TrainState, config, dp: DataParallel):
  """Pretrained backbone (config.model.pretrained) or another run (config.init_from)."""
  report = None
  if config.init_from:
    params, stats, report = checkpoints.load_params_from(
        config.init_from, state.params, state.batch_stats, config.data.label_space)
    print(f"initialised from {report['source']}: label tokens loaded "
          f"{report['loaded_label_tokens']}, new {report['new_label_tokens']}, dropped "
          f"{report['dropped_label_tokens']}")
  elif config.model.pretrained:
    variables = models.load_pretrained_backbone(
        {"params": jax.device_get(state.params), "batch_stats": jax.device_get(
            state.batch_stats)}, config.model)
    params, stats = variables["params"], variables["batch_stats"]
  else:
    return state, None
  params = jax.device_put(params, dp.replicated)
  stats = jax.device_put(stats, dp.replicated)
  # The optimiser moments start at zero either way: a fresh opt_state for the new params.
  return state.replace(params=params, batch_stats=stats), report
