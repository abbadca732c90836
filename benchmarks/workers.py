"""The measurements that run in a subprocess of their own, each writing one JSON dict.

  python -m benchmarks.workers --kind=jax --plan=quick [--dtype=bfloat16] [--profile=full]
      --out=result.json
  python -m benchmarks.workers --kind=input --plan=quick --out=result.json

XLA_FLAGS must be set before JAX initialises, so benchmarks/run.py starts every JAX variant
as this module in a process with its own environment, and reads back the JSON it writes:
  jax    the real training step (`train.train_step` mapped with `DataParallel`, on-device
         augmentation included) and the jitted `train.predict_step`, under this process's
         XLA_FLAGS, with compile times; by --profile, also where the time goes, the FLOP
         counts, the input wait on the real tf.data iterator and the augmentation's cost;
  input  frames/s of the tf.data input pipeline alone (TensorFlow, no JAX; what bounds it:
         docs/performance.md, "## Input pipeline").
JAX and TensorFlow are imported inside the functions, never when this module is imported:
run.py imports it without JAX (and `run.py --gpu` calls `jax_worker` in its own process).
"""

import dataclasses
import functools
import importlib.metadata
import os
import pathlib
import statistics
import sys
import time
from typing import Any

from absl import flags
import numpy as np

import benchmarks
from benchmarks import cli
from benchmarks import flops
from benchmarks import plans
from benchmarks import timing
from benchmarks import trace

DATA_DIR = "data/tfds"  # the synthetic dataset, built by the demo (data/README.md)
STEPS_PER_EPOCH = 100  # only shapes the learning-rate schedules: no effect on speed
PROGRESS_PREFIX = "  section "  # worker lines that the parent echoes as progress
KINDS = ("jax", "input")
# What a jax worker measures besides images/s and compile times, by --profile.
PROFILES = {
    "none": "nothing more",
    "trace": "where the time goes, measured so that it adds up: with --cpus=1 and Eigen "
             "synchronous (benchmarks/trace.py), a profiler trace of one inference call and "
             "one train step by HLO op kind with the FLOPs of each kind, and the matmul peak "
             "on that core",
    "full": "the FLOP counts, the fp32 matmul peak, the backbone alone vs the whole forward, "
            "the input wait on the real iterator and the augmentation's cost",
    "gpu": "the FLOP counts and the matmul peak in --dtype (for the utilisation), nothing "
           "CPU-specific",
}
VERSIONED = ("jax", "jaxlib", "flax", "optax", "tensorflow", "keras", "numpy")


class _Laps:
  """Wall seconds of each section of a worker, so that the benchmark's own cost is visible."""

  def __init__(self):
    self.seconds = {}
    self._last = time.perf_counter()

  def __call__(self, name: str) -> None:
    now = time.perf_counter()
    self.seconds[name] = round(now - self._last, 1)
    self._last = now
    print(f"{PROGRESS_PREFIX}{name}: {self.seconds[name]} s", file=sys.stderr, flush=True)


def bench_config(sizes: plans.Sizes, dtype: str):
  """configs/abaw3.py at the mode's sizes: random init (weights do not change speed)."""
  from configs import abaw3  # pylint: disable=g-import-not-at-top
  from mlt_flax import configuration  # pylint: disable=g-import-not-at-top
  config = abaw3.get_config()
  config.model.backbone = sizes.backbone
  config.model.pretrained = ""
  config.model.image_size = sizes.image_size
  config.model.dtype = dtype
  config.data.data_dir = DATA_DIR
  config.train.batch_size = sizes.train_batch
  config.eval.batch_size = sizes.infer_batch
  configuration.validate(config)
  return config


def dataset_ready(config) -> bool:
  """Whether the synthetic dataset is built (else the workers make their own inputs)."""
  from mlt_flax import input_pipeline  # pylint: disable=g-import-not-at-top
  try:
    input_pipeline.builder(config.data.datasets[0], config.data.data_dir)
  except FileNotFoundError:
    return False
  return True


@dataclasses.dataclass
class _Steps:
  """The real steps, mapped over this process's devices as training maps them (not compiled)."""
  dp: Any  # the DataParallel mapping
  state: Any  # the initial train state, replicated
  predict: Any  # (variables, batch) -> probabilities; keeps its inputs
  train: Any  # (state, batch) -> (state, metrics, all finite); donates the state


def _steps(config, num_labels: int) -> _Steps:
  """The model wired into the train and predict steps: the one place of the benchmark that
  does it, the way train_and_evaluate does."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from mlt_flax import input_pipeline  # pylint: disable=g-import-not-at-top
  from mlt_flax import runtime  # pylint: disable=g-import-not-at-top
  from mlt_flax import train  # pylint: disable=g-import-not-at-top
  dp = runtime.DataParallel()
  model, lr_fns, tx = runtime.build(config, STEPS_PER_EPOCH)
  state = jax.jit(
      lambda: runtime.create_train_state(config.seed, model, tx, config.model.image_size),
      out_shardings=dp.replicated)()
  predict = runtime.predict_fn(config, dp)
  step = train.make_train_step(config, dp, model=model, tx=tx, lr_fns=lr_fns,
                               weights=np.ones(num_labels),
                               allow_mixup=not input_pipeline.has_partial_labels(config))
  return _Steps(dp=dp, state=state, predict=predict, train=step)


def _compile(fn, *args) -> tuple[float, Any]:
  """(seconds, the compiled fn) of lowering and compiling `fn` for `args`."""
  start = time.perf_counter()
  compiled = fn.lower(*args).compile()
  return time.perf_counter() - start, compiled


def jax_worker(sizes: plans.Sizes, dtype: str, profile: str) -> dict:
  """Times the real train and predict steps under this process's XLA_FLAGS; `profile` is
  one of PROFILES."""
  import jax  # pylint: disable=g-import-not-at-top
  from mlt_flax import aus  # pylint: disable=g-import-not-at-top
  from mlt_flax import input_pipeline  # pylint: disable=g-import-not-at-top
  from mlt_flax import models  # pylint: disable=g-import-not-at-top

  lap = _Laps()
  config = bench_config(sizes, dtype)
  num_labels = len(aus.label_space(config.data.label_space))
  steps = _steps(config, num_labels)
  dp, state = steps.dp, steps.state
  local_train = dp.local_batch_size(sizes.train_batch)
  # The same model without the mapped BatchNorm axis: runs outside shard_map.
  eval_model = models.build_model(config.model, num_labels)
  rng = np.random.default_rng(0)
  frame = config.data.frame_size

  def host_batch(b):  # what the input pipeline yields: uint8 frames at native size
    return {"image": rng.integers(0, 256, (b, frame, frame, 3), np.uint8),
            "labels": rng.integers(0, 2, (b, num_labels)).astype(np.float32)}

  out = {"dtype": dtype, "xla_flags": os.environ.get("XLA_FLAGS", ""),
         "devices": jax.device_count(), "device_kind": jax.devices()[0].device_kind,
         "params": sum(int(np.prod(x.shape)) for x in jax.tree.leaves(
             (state.params, state.batch_stats))),
         "versions": versions()}

  # Inference first: the train step donates (consumes) the state.
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  infer_batch = dp.to_global(
      {"image": host_batch(dp.local_batch_size(sizes.infer_batch))["image"]})
  out["compile_infer_s"], predict = _compile(steps.predict, variables, infer_batch)
  infer = lambda: predict(variables, infer_batch).block_until_ready()
  _, infer_s = timing.median_times(infer, sizes.warmup, sizes.timed)
  out.update(infer_s=infer_s, infer_images_per_s=sizes.infer_batch / infer_s)
  out["xla_flops_infer"] = flops.xla_flops(predict) / sizes.infer_batch
  lap("setup_and_inference")

  tracing = profile == "trace"
  if profile == "full":
    out.update(_profile_inference(sizes, eval_model, variables))
    lap("profile_inference")
  if tracing:
    out["trace_infer"] = trace.trace_ops(infer, predict)
    lap("trace_inference")
  if profile in ("full", "gpu"):
    out.update(flops.model_flops(eval_model, config.loss, num_labels, sizes.image_size))
    lap("flops")

  train_batch = dp.to_global(host_batch(local_train))
  out["compile_train_s"], step = _compile(steps.train, state, train_batch)
  out["xla_flops_train"] = flops.xla_flops(step) / sizes.train_batch

  def one_step(batch):
    nonlocal state
    state, _, finite = step(state, batch)
    bool(finite)  # what the training loop does after every step: wait for the result

  _, train_s = timing.median_times(lambda: one_step(train_batch), sizes.warmup, sizes.timed)
  out.update(train_step_s=train_s, train_images_per_s=sizes.train_batch / train_s)
  lap("train")
  if tracing:
    out["trace_train"] = trace.trace_ops(lambda: one_step(train_batch), step)
    lap("trace_training")
    # The core's peak: the better of XLA's and numpy's (OpenBLAS) matmul on the same core.
    out["matmul_fp32_flops_per_s"] = max(
        flops.jax_matmul_peak("float32", sizes.matmul_size, sizes.matmul_repeats),
        flops.numpy_matmul_peak(sizes.matmul_size, sizes.matmul_repeats))
    out["cpus"] = sorted(os.sched_getaffinity(0))

  if profile == "full":
    if dataset_ready(config):
      batches = input_pipeline.train_iterator(config, local_batch_size=local_train)
      out["input_source"] = f"tf.data train_iterator on {config.data.data_dir}"
    else:
      batches = iter(lambda: host_batch(local_train), None)
      out["input_source"] = "synthetic in-memory batches (no dataset built)"
    out.update(_input_wait_split(batches, dp, one_step, sizes.input_steps))
    lap("input_wait_split")
    out.update(_augment_costs(config, sizes, train_batch, infer_batch))
    lap("augment")
    out["matmul_fp32_flops_per_s"] = flops.jax_matmul_peak("float32", sizes.matmul_size,
                                                           sizes.matmul_repeats)
  if dtype == "bfloat16" or profile == "gpu":
    short = {"bfloat16": "bf16", "float32": "fp32"}[dtype]
    out[f"matmul_{short}_flops_per_s"] = flops.jax_matmul_peak(dtype, sizes.matmul_size,
                                                               sizes.matmul_repeats)
  lap("matmul")
  out["worker_sections_s"] = lap.seconds
  return out


def _profile_inference(sizes: plans.Sizes, eval_model, variables) -> dict:
  """The backbone's forward alone vs the whole model's (float inputs at model size)."""
  import jax  # pylint: disable=g-import-not-at-top
  s = sizes.image_size
  images = jax.random.uniform(jax.random.key(1), (sizes.infer_batch, s, s, 3), minval=-1)
  backbone_vars = {c: variables[c]["backbone"] for c in ("params", "batch_stats")}
  backbone = jax.jit(lambda v, x: eval_model.backbone.apply(v, x, False))
  whole = jax.jit(lambda v, x: eval_model.apply(v, x, train=False))
  _, backbone_s = timing.median_times(
      lambda: backbone(backbone_vars, images).block_until_ready(), sizes.warmup, sizes.timed)
  _, whole_s = timing.median_times(lambda: whole(variables, images).block_until_ready(),
                                   sizes.warmup, sizes.timed)
  return {"prof_backbone_fwd_s": backbone_s, "prof_whole_fwd_s": whole_s}


def _input_wait_split(batches, dp, one_step, steps: int) -> dict:
  """Median seconds of a train step blocked on the next batch (input_wait_s) and computing
  (compute_s), on an iterator as train_and_evaluate uses it."""
  one_step(dp.to_global(next(batches)))  # fills tf.data's buffers and prefetch
  waits, computes = [], []
  for _ in range(steps):
    start = time.perf_counter()
    batch = dp.to_global(next(batches))
    mid = time.perf_counter()
    one_step(batch)
    waits.append(mid - start)
    computes.append(time.perf_counter() - mid)
  return {"input_wait_s": statistics.median(waits), "compute_s": statistics.median(computes)}


def _augment_costs(config, sizes: plans.Sizes, train_batch, infer_batch) -> dict:
  """Seconds of the on-device augmentation of a train batch (augment_s) and of the resize of
  an inference batch (preprocess_s), each jitted and timed alone."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from mlt_flax import augment  # pylint: disable=g-import-not-at-top
  aug = jax.jit(functools.partial(augment.augment, cfg=config.augment,
                                  size=sizes.image_size, allow_mixup=True))
  frames = jnp.asarray(train_batch["image"])
  labels = jnp.asarray(train_batch["labels"])
  _, augment_s = timing.median_times(
      lambda: jax.block_until_ready(aug(jax.random.key(0), frames, labels)), sizes.warmup,
      sizes.augment_repeats)
  pre = jax.jit(functools.partial(augment.preprocess, size=sizes.image_size))
  infer_frames = jnp.asarray(infer_batch["image"])
  _, preprocess_s = timing.median_times(
      lambda: pre(infer_frames).block_until_ready(), sizes.warmup, sizes.augment_repeats)
  return {"augment_s": augment_s, "preprocess_s": preprocess_s}


def input_worker(sizes: plans.Sizes) -> dict:
  """Frames/s of the input pipeline alone: decode-only tf.data vs the full train_iterator."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from mlt_flax import input_pipeline  # pylint: disable=g-import-not-at-top
  config = bench_config(sizes, "float32")
  batch = sizes.train_batch
  if dataset_ready(config):
    b = input_pipeline.builder(config.data.datasets[0], config.data.data_dir)
    encoded = b.as_dataset(split=config.data.train_splits[0],
                           decoders={"image": tfds.decode.SkipDecoding()})
    encoded = encoded.map(lambda ex: ex["image"]).repeat()
    full = input_pipeline.train_iterator(config, local_batch_size=batch)
    source = f"{config.data.datasets[0]} in {config.data.data_dir}"
  else:  # no dataset: JPEGs of random frames, in memory
    s = config.data.frame_size
    frames = np.random.default_rng(0).integers(0, 256, (batch, s, s, 3), np.uint8)
    jpegs = [tf.io.encode_jpeg(f).numpy() for f in frames]
    encoded = tf.data.Dataset.from_tensor_slices(jpegs).repeat()
    full = None
    source = "in-memory random JPEGs (no dataset built)"
  decoded = encoded.map(input_pipeline.decode_frame,
                        num_parallel_calls=tf.data.AUTOTUNE)
  decoded = iter(tfds.as_numpy(decoded.batch(batch).prefetch(tf.data.AUTOTUNE)))
  out = {"input_source": source,
         "decode_frames_per_s": _frames_per_s(decoded, batch, sizes.input_frames)}
  out["train_iterator_frames_per_s"] = (
      _frames_per_s(full, batch, sizes.input_frames) if full else out["decode_frames_per_s"])
  return out


def _frames_per_s(iterator, batch: int, frames: int) -> float:
  """Frames/s of `iterator`'s batches of `batch` frames, over about `frames` frames."""
  next(iterator)  # first batch: opening files, filling the shuffle buffer
  steps = max(frames // batch, 1)

  def consume() -> int:
    for _ in range(steps):
      next(iterator)
    return steps * batch

  return timing.per_second(consume)[1]


def versions() -> dict:
  """The installed version of each package the figures depend on."""
  out = {}
  for name in VERSIONED:
    try:
      out[name] = importlib.metadata.version(name if name != "tensorflow" else "tensorflow-cpu")
    except importlib.metadata.PackageNotFoundError:
      try:
        out[name] = importlib.metadata.version(name)
      except importlib.metadata.PackageNotFoundError:
        out[name] = "not installed"
  return out


def _define_flags() -> None:
  flags.DEFINE_enum("kind", None, KINDS, "jax: the train and predict steps under this "
                    "process's XLA_FLAGS; input: the tf.data input pipeline alone.")
  flags.DEFINE_enum("plan", "full", list(plans.PLANS), "The sizes (benchmarks/plans.py).")
  flags.DEFINE_integer("train_batch", 0, "Overrides the plan's training batch (0: keep).")
  flags.DEFINE_integer("infer_batch", 0, "Overrides the plan's inference batch (0: keep).")
  flags.DEFINE_enum("dtype", "float32", ("float32", "bfloat16"),
                    "--kind=jax: the model's compute dtype (bfloat16 here: "
                    "docs/performance.md, \"## bfloat16 on CPU\").")
  flags.DEFINE_enum("profile", "none", list(PROFILES),
                    "--kind=jax: what it measures besides images/s and compile times; "
                    + "; ".join(f"{k}: {v}" for k, v in PROFILES.items()) + ".")
  flags.DEFINE_integer("cpus", 0, "Run on this many cores (0: all), set before JAX starts; "
                       "--profile=trace runs on one.")
  flags.DEFINE_string("out", None, "Write the JSON result here.")
  flags.mark_flags_as_required(["kind", "out"])


def main() -> None:
  f = flags.FLAGS
  sizes = plans.get(f.plan, f.train_batch, f.infer_batch)
  out = pathlib.Path(f.out).resolve()  # before leaving the directory it is relative to
  os.chdir(benchmarks.REPO)  # DATA_DIR is relative to the repository
  if f.cpus:  # before JAX sizes its thread pools
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:f.cpus])
  result = jax_worker(sizes, f.dtype, f.profile) if f.kind == "jax" else input_worker(sizes)
  cli.write_json(out, result)


if __name__ == "__main__":
  cli.run(_define_flags, main)
