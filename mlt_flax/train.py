"""Training: the per-device train step, its mapping, and the `train_and_evaluate` loop.

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
from mlt_flax import checkpoints
from mlt_flax import configuration
from mlt_flax import console
from mlt_flax import curves
from mlt_flax import input_pipeline
from mlt_flax import losses
from mlt_flax import metrics as challenge_metrics
from mlt_flax import models
from mlt_flax import optim
from mlt_flax import plots
from mlt_flax import runtime

AXIS = runtime.AXIS


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


def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def train_step(state: runtime.TrainState, batch, *, model, tx, config, weights, lr_fns,
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
  trained = set(jax.tree.leaves(optim.param_groups(state.params))) - set(config.optim.frozen)
  lrs = {f"lr_{g}": (fn(state.step) if g in trained else 0.0) for g, fn in lr_fns.items()}
  step_metrics = TrainMetrics.single_from_model_output(
      loss=loss, bce=terms["bce"], dice=terms["dice"], grad_norm=optax.tree.norm(grads),
      param_norm=optax.tree.norm(new_state.params), **lrs)
  return new_state, step_metrics, finite


def make_train_step(config: ml_collections.ConfigDict, dp: runtime.DataParallel, *, model, tx,
                    lr_fns, weights, allow_mixup: bool):
  """`train_step` mapped over the mesh: fn(state, global batch) -> (state, metrics, finite),
  the state donated. The one place the step is wired (the loop and the benchmarks use it)."""
  return dp.map(functools.partial(train_step, model=model, tx=tx, config=config,
                                  weights=jnp.asarray(weights), lr_fns=lr_fns,
                                  allow_mixup=allow_mixup),
                out_specs=(jax.P(), jax.P(), jax.P()), donate_state=True)


def evaluate_f1(predict, state: runtime.TrainState, config: ml_collections.ConfigDict,
                dp: runtime.DataParallel, *, split: str | None = None,
                frame_stride: int | None = None) -> dict:
  """Validation per-AU F1 at the fixed threshold ('val_f1/AU..') and their mean, over the
  AUs the evaluation dataset annotates (`runtime.scored_aus`).

  The same scoring as the reports (`metrics.f1_scores` over every scored frame, from every
  process), on the frames of `input_pipeline.eval_batches`: with a face crop, every
  config.data.frame_stride-th (the report's 'strided' secondary row; the challenge protocol,
  every labelled frame, is `evaluate`'s). `split` and `frame_stride` score another split of
  the evaluation dataset (the learning curves' training frames) the same way.
  """
  batches = input_pipeline.eval_batches(
      config, local_batch_size=dp.local_batch_size(config.eval.batch_size, "eval.batch_size"),
      split=split, frame_stride=frame_stride,
      process_index=jax.process_index(), process_count=jax.process_count())
  pred = runtime.collect(predict, runtime.variables_of(state), batches, dp)
  columns, names = runtime.scored_aus(config)
  per_au, mean = challenge_metrics.f1_scores(pred["probs"][:, columns],
                                             pred["labels"][:, columns], config.eval.threshold)
  out = {f"val_f1/{n}": float(v) for n, v in zip(names, per_au)}
  out[checkpoints.BEST_METRIC] = float(mean)
  return out


def _train_frames_f1(predict, state: runtime.TrainState, config: ml_collections.ConfigDict,
                     dp: runtime.DataParallel) -> float | None:
  """Mean F1 on every config.eval.train_f1_stride-th training frame (None when 0)."""
  stride = config.eval.train_f1_stride
  if not stride:
    return None
  split = config.data.train_splits[list(config.data.datasets).index(config.data.eval_dataset)]
  return evaluate_f1(predict, state, config, dp, split=split,
                     frame_stride=stride)[checkpoints.BEST_METRIC]


def param_digest(params) -> str:
  """SHA-256 of this process's copy of the (replicated) parameters: equal copies, equal hash."""
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(params):
    h.update(np.ascontiguousarray(leaf.addressable_data(0)).tobytes())
  return h.hexdigest()[:16]


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
  main_process = jax.process_index() == 0
  dp = runtime.DataParallel()
  local_batch = dp.local_batch_size(config.train.batch_size)
  dp.local_batch_size(config.eval.batch_size, "eval.batch_size")  # checked before training

  stats = input_pipeline.train_split_stats(config)
  train_frames = sum(s.num_frames for s in stats)
  weights = input_pipeline.mixture_frequency_weights(stats, config.data.weights)
  steps_per_epoch = input_pipeline.steps_per_epoch(train_frames, config.train.batch_size)
  total_steps = config.train.num_steps or int(config.train.num_epochs * steps_per_epoch)

  model, lr_fns, tx = runtime.build(config, steps_per_epoch)
  checkpoints.check_resumable(workdir, config)  # before anything in the workdir is touched
  mngr = checkpoints.manager(workdir, config)
  restored = checkpoints.restore_latest(mngr, runtime.abstract_state(config, dp,
                                                                     steps_per_epoch))
  init_report = None
  if restored is not None:
    state, start_step = restored
    print(f"resuming from checkpoint step {start_step} in {mngr.directory}")
  else:
    start_step = 0
    state = jax.jit(lambda: runtime.create_train_state(config.seed, model, tx,
                                                       config.model.image_size),
                    out_shardings=dp.replicated)()
    state, init_report = _initialise_from_elsewhere(state, config, dp)
  _write_json(workdir / "config.json", config.to_dict())

  step_fn = make_train_step(config, dp, model=model, tx=tx, lr_fns=lr_fns, weights=weights,
                            allow_mixup=not input_pipeline.has_partial_labels(config))
  predict = runtime.predict_fn(config, dp)

  writer = metric_writers.create_default_writer(
      workdir, just_logging=not main_process, asynchronous=True)
  hooks = []
  progress = console.Progress(total_steps, start_step, enabled=main_process)
  if main_process:
    hooks.append(periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer))
    if config.train.profile_steps:
      hooks.append(periodic_actions.Profile(num_profile_steps=config.train.profile_steps,
                                            logdir=str(workdir)))
  if init_report:
    writer.write_texts(start_step, {"init_from": json.dumps(init_report)})
  batches = input_pipeline.train_iterator(
      config, local_batch_size=local_batch, start_step=start_step,
      process_index=jax.process_index(), process_count=jax.process_count())
  preemption = _Preemption()  # from here on, SIGTERM means: checkpoint, then exit 0
  print(f"training {total_steps} steps ({steps_per_epoch}/epoch, {train_frames} frames, "
        f"global batch {config.train.batch_size}) on {jax.device_count()} devices; "
        f"workdir {workdir}")
  train_metrics, history, last_eval, untrained_eval = None, [], {}, None
  last_eval_step = start_step
  untrained_path = workdir / "untrained_eval.json"
  if start_step == 0 and config.train.eval_at_start:
    untrained_eval = evaluate_f1(predict, state, config, dp)  # the untrained model
    writer.write_scalars(0, untrained_eval)
    _write_json(untrained_path, untrained_eval)
    print(f"untrained model: validation mean F1 {untrained_eval[checkpoints.BEST_METRIC]:.3f}")
  elif untrained_path.exists():
    untrained_eval = json.loads(untrained_path.read_text())
  t = config.train
  step = start_step
  learning = curves.Curves.load(workdir, start_step)
  stopped_early = learning.should_stop(t.early_stopping_patience)  # before a resumption
  if stopped_early:
    print(f"stopped early before: {learning.story()}")
  try:
    with metric_writers.ensure_flushes(writer):
      while step < total_steps and not stopped_early:
        state, step_metrics, finite = step_fn(state, dp.to_global(next(batches)))
        step += 1
        if not bool(finite):
          msg = f"non-finite loss or gradient at step {step}"
          if t.on_nonfinite == "stop":
            checkpoints.wait(mngr)
            raise FloatingPointError(
                f"{msg}; stopping (config.train.on_nonfinite='stop'). The last good "
                f"checkpoint is step {mngr.latest_step()} in {mngr.directory}.")
          progress.interrupt()
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
          last_eval = evaluate_f1(predict, state, config, dp)
          last_eval_step = step
          train_f1 = _train_frames_f1(predict, state, config, dp)
          writer.write_scalars(step, {**last_eval, **(
              {} if train_f1 is None else {"train_mean_f1": train_f1})})
          learning.add(step, last_eval[checkpoints.BEST_METRIC], train_mean_f1=train_f1,
                       train_loss=history[-1]["train/loss"] if history else None)
          if main_process:
            learning.save(workdir)
          stopped_early = learning.should_stop(t.early_stopping_patience)
        progress.note(", ".join(
            ([f"loss {history[-1]['train/loss']:.3f}"] if history else []) +
            ([f"val F1 {last_eval[checkpoints.BEST_METRIC]:.3f} at step {last_eval_step}"]
             if last_eval else [])))
        progress(step)
        if (step % t.checkpoint_every_steps == 0 or step == total_steps or
            preemption.requested or (do_eval and t.early_stopping_patience)):
          checkpoints.save(mngr, step, state, config,
                           metrics={checkpoints.BEST_METRIC: last_eval[
                               checkpoints.BEST_METRIC]} if do_eval else None)
        if preemption.requested:
          checkpoints.wait(mngr)
          progress.interrupt()
          print(f"SIGTERM: saved checkpoint step {step}; exiting")
          sys.exit(0)
        if stopped_early:
          progress.interrupt()
          print(f"early stop at step {step} of {total_steps} "
                f"(train.early_stopping_patience={t.early_stopping_patience})")
  finally:
    checkpoints.wait(mngr)
    preemption.restore()
  if not last_eval:  # resumed at the very end: nothing left to train, still report
    last_eval = evaluate_f1(predict, state, config, dp)
  digest = param_digest(state.params)
  if jax.process_count() > 1:
    print(f"process {jax.process_index()}: final parameter digest {digest}")
  summary = {"steps": step, "train_frames": train_frames, "steps_per_epoch": steps_per_epoch,
             "final_eval": last_eval, "untrained_eval": untrained_eval,
             "nonfinite_steps": int(state.nonfinite_steps), "best_step": mngr.best_step(),
             "stopped_early": stopped_early, "evaluations": learning.points,
             "param_digest": digest, "history": history}
  _write_json(workdir / "summary.json", summary)
  if main_process and learning.points:
    plots.learning_curves(learning.points, workdir / curves.PLOT,
                          title=f"learning curves: {workdir.name}")
    print(f"{learning.story()}; curves in {workdir / curves.PLOT}")
  print(f"done: {step} steps; validation mean F1 {last_eval[checkpoints.BEST_METRIC]:.3f} "
        f"(threshold {config.eval.threshold}); best checkpoint step {mngr.best_step()}; "
        f"summary in {workdir / 'summary.json'}" +
        ("" if jax.process_count() > 1 else f"; final parameter digest {digest}"))
  mngr.close()
  return summary


def _initialise_from_elsewhere(state: runtime.TrainState, config,
                               dp: runtime.DataParallel):
  """Pretrained backbone (config.model.pretrained) or another run (config.init_from)."""
  report = None
  if config.init_from:
    params, stats, report = checkpoints.load_params_from(
        config.init_from, state.params, state.batch_stats, config.data.label_space,
        which=config.init_from_checkpoint)
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
