"""Every speed figure of the project in one run and one table, measured side by side.

  python -m benchmarks.run [--quick] [--markdown_out=workdir/benchmarks/latest.md]

This machine is shared and noisy (+-15-25% between runs, PERF_NOTES), so everything that is
compared is measured in the same run and read as a ratio:
  1. the paper's model (InceptionV3 at 299 + MLT head, L = 12): the real training step
     (`train.train_step` mapped with `DataParallel`, on-device augmentation included) and the
     jitted `train.predict_step`, next to an independent tf.keras peer of the same model
     (benchmarks/keras_peer.py), in float32 and in bfloat16;
  2. JAX with and without `--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`;
  3. FLOPs per image counted from the model's jaxpr (2 x multiply-adds of every convolution
     and dot) and XLA's own cost_analysis, and the model FLOP utilisation against the fp32
     and bf16 matmul peaks measured in the same run;
  4. compile times; the train step split into input wait (blocked on the real tf.data
     iterator) and compute; the input pipeline alone; the on-device augmentation's cost; and
     where the time goes (backbone vs head, convolutions vs the rest);
  5. the metric benchmark (benchmarks/metric_speed.py);
  6. targets, PASS / MISS.

XLA_FLAGS must be set before JAX initialises, so every JAX variant runs in its own
subprocess with its own environment (and so does the Keras peer, and TensorFlow's input
pipeline); each writes a JSON dict that this parent process, which never initialises JAX
itself, joins into one table. `--quick` shrinks every size so that the whole run takes about
two minutes (the test runs it); its figures only show that the machinery works.
"""

import argparse
import collections
import dataclasses
import datetime
import functools
import gzip
import importlib.metadata
import json
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks import timing

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_MARKDOWN = "workdir/benchmarks/latest.md"
YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
DATA_DIR = "data/tfds"  # the synthetic dataset, built by the demo (data/README.md)
STEPS_PER_EPOCH = 100  # only shapes the learning-rate schedules: no effect on speed
WORKER_TIMEOUT_S = 900  # metric_speed taking longer than this is broken, not slow
PROGRESS_PREFIX = "  section "  # worker lines that the parent echoes as progress
TOP_OP_CHARS = 160  # the table's description of the largest op, cut to this
TRAIN_FLOPS_FACTOR = 3  # the rule of thumb: backward = 2 x forward
VERSIONED = ("jax", "jaxlib", "flax", "optax", "tensorflow", "keras", "numpy")


@dataclasses.dataclass(frozen=True)
class Sizes:
  """What one mode measures; every timing is a median of `timed` calls after `warmup`."""
  backbone: str  # the Flax backbone; the Keras peer builds the same one
  image_size: int  # model input, pixels
  train_batch: int  # global training batch (the paper's per-step batch here is 16)
  infer_batch: int  # inference batch
  warmup: int  # untimed calls after the compiling one
  timed: int  # timed calls
  input_steps: int  # train steps timed on the real input iterator (input wait vs compute)
  input_frames: int  # frames timed through the input pipeline alone
  augment_repeats: int  # timed calls of the (cheap) augmentation alone
  matmul_size: int  # n of the n^3 matmul measuring the machine's peak
  matmul_repeats: int  # best of this many
  metric_frames: int  # benchmarks/metric_speed: frames of the synthetic split
  metric_videos: int  # ... its videos
  metric_repeats: int  # ... median of this many


FULL = Sizes(backbone="inception_v3", image_size=299, train_batch=16, infer_batch=32,
             warmup=1, timed=3, input_steps=2, input_frames=3000, augment_repeats=5,
             matmul_size=4096, matmul_repeats=5, metric_frames=1_000_000,
             metric_videos=2000, metric_repeats=3)
# Quick: the whole machinery, two timed steps, small enough for a test (compiling the
# InceptionV3 train step alone takes 15-30 s here, the Keras graph 35 s: quick uses the small
# CNN backbone in both frameworks, same head).
QUICK = Sizes(backbone="small_cnn", image_size=75, train_batch=16, infer_batch=32,
              warmup=1, timed=2, input_steps=2, input_frames=256, augment_repeats=2,
              matmul_size=1024, matmul_repeats=2, metric_frames=20_000, metric_videos=50,
              metric_repeats=1)

# An accelerator (benchmarks/gpu.sh): bfloat16 at the batches that keep a big chip busy.
GPU = Sizes(backbone="inception_v3", image_size=299, train_batch=256, infer_batch=256,
            warmup=2, timed=10, input_steps=0, input_frames=0, augment_repeats=0,
            matmul_size=8192, matmul_repeats=10, metric_frames=0, metric_videos=0,
            metric_repeats=0)

# The table, in order: (key, what is measured). The test checks every key is printed.
ROWS = (
    ("params", "parameters + BN statistics: Flax | Keras peer"),
    ("train_fp32_default", "train img/s fp32, JAX default XLA flags | Keras"),
    ("train_fp32_ynn", "train img/s fp32, JAX + ynn flag | Keras"),
    ("infer_fp32_default", "inference img/s fp32, JAX default XLA flags | Keras"),
    ("infer_fp32_ynn", "inference img/s fp32, JAX + ynn flag | Keras"),
    ("train_fp32_best", "TARGET train img/s fp32, JAX faster flag setting | Keras"),
    ("infer_fp32_best", "TARGET inference img/s fp32, JAX faster flag setting | Keras"),
    ("train_bf16", "train img/s bf16 (JAX, faster flag setting) | Keras mixed_bfloat16"),
    ("infer_bf16", "inference img/s bf16 (JAX, faster flag setting) | Keras mixed_bfloat16"),
    ("flag_train", "XLA flag, train img/s fp32: JAX + ynn flag | JAX default"),
    ("flag_infer", "XLA flag, inference img/s fp32: JAX + ynn flag | JAX default"),
    ("peak_fp32", "matmul peak fp32 GFLOP/s: jnp.dot | numpy (best of n)"),
    ("peak_tf_fp32", "matmul peak fp32 GFLOP/s: tf.matmul | numpy"),
    ("peak_bf16", "matmul peak bf16 GFLOP/s: jnp.dot | tf.matmul"),
    ("flops_fwd", "forward GFLOP/image: jaxpr count | XLA cost_analysis"),
    ("flops_train", "train GFLOP/image: jaxpr count (fwd+bwd) | 3 x forward"),
    ("mfu_train", "MFU train fp32 (vs best fp32 matmul): JAX | Keras"),
    ("mfu_infer", "MFU inference fp32 (vs best fp32 matmul): JAX | Keras"),
    ("mfu_train_bf16", "MFU train bf16 (vs best bf16 matmul): JAX | Keras"),
    ("compile_train", "compile s, train step: JAX (ynn) | Keras first call"),
    ("compile_infer", "compile s, inference: JAX (ynn) | Keras first call"),
    ("step_split", "train step ms on the real iterator: input wait | compute"),
    ("input_vs_train", "TARGET frames/s: full train_iterator alone | JAX train img/s"),
    ("input_decode", "frames/s: decode-only tf.data | full train_iterator"),
    ("augment", "ms per train batch: on-device augment | whole train step"),
    ("preprocess", "ms per inference batch: on-device resize | whole predict step"),
    ("prof_backbone_fwd", "profile, inference ms/batch: backbone alone | whole model"),
    ("prof_infer_ynn", "trace, inference, ynn flag: conv op ms | all op ms"),
    ("prof_infer_default", "trace, inference, default flags: conv op ms | all op ms"),
    ("prof_train_ynn", "trace, train step, ynn flag: conv op ms | all op ms"),
    ("prof_train_default", "trace, train step, default flags: conv op ms | all op ms"),
    ("prof_top_ynn", "trace, train step, ynn flag: largest single op ms | all op ms"),
    ("prof_top_default", "trace, train step, default flags: largest single op ms | all op ms"),
    ("metric_f1", "metric s: f1_scores (ours) | sklearn per-AU f1_score"),
    ("metric_smooth_f1", "metric s: smooth + f1_scores | target 1 s"),
    ("metric_tune", "metric s: tune_thresholds | sklearn loop (extrapolated)"),
    ("load", "load average (1 min): start | end"),
)


# ----------------------------------------------------------------------------------------
# Workers (subprocesses). JAX and TensorFlow are imported inside them, never in the parent.
# ----------------------------------------------------------------------------------------


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


def _bench_config(sizes: Sizes, dtype: str):
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


def _dataset_ready(config) -> bool:
  from mlt_flax import input_pipeline  # pylint: disable=g-import-not-at-top
  try:
    input_pipeline.builder(config.data.datasets[0], config.data.data_dir)
  except FileNotFoundError:
    return False
  return True


def _valid_taps(in_size: int, out_size: int, window: int, stride: int, pad_lo: int,
                lhs_dilation: int, rhs_dilation: int) -> int:
  """(output position, window tap) pairs of one spatial dim that land on a real input element.

  Padding and the holes of an lhs dilation (how JAX transposes a strided convolution) hold
  zeros: multiplying them is not work of the model.
  """
  last = (in_size - 1) * lhs_dilation  # the last real element, in dilated coordinates
  count = 0
  for o in range(out_size):
    for k in range(window):
      pos = o * stride + k * rhs_dilation - pad_lo
      count += 0 <= pos <= last and pos % lhs_dilation == 0
  return count


def _conv_flops(eqn, count_padding: bool) -> int:
  """2 x multiply-adds of one conv_general_dilated equation."""
  p = eqn.params
  lhs, rhs, out = eqn.invars[0].aval, eqn.invars[1].aval, eqn.outvars[0].aval
  dn = p["dimension_numbers"]  # specs: (batch or out-feature, feature or in-feature, spatial..)
  taps = 1
  for i in range(len(dn.rhs_spec) - 2):
    in_size, out_size = lhs.shape[dn.lhs_spec[2 + i]], out.shape[dn.out_spec[2 + i]]
    window = rhs.shape[dn.rhs_spec[2 + i]]
    if count_padding:
      taps *= out_size * window
    else:
      taps *= _valid_taps(in_size, out_size, window, p["window_strides"][i],
                          p["padding"][i][0], p["lhs_dilation"][i], p["rhs_dilation"][i])
  per_tap = out.shape[dn.out_spec[0]] * out.shape[dn.out_spec[1]] * rhs.shape[dn.rhs_spec[1]]
  return 2 * per_tap * taps


def jaxpr_flops(closed_jaxpr, count_padding: bool = False) -> int:
  """2 x multiply-adds of every convolution and dot_general in a jaxpr (sub-jaxprs too).

  count_padding: also count the taps that fall on a convolution's zero padding (the usual
  way to quote a CNN's FLOPs, e.g. 11.4 GFLOP for InceptionV3 at 299); by default only taps
  on real input elements count (XLA's cost_analysis does the same).
  """
  from jax.extend import core as jex_core  # pylint: disable=g-import-not-at-top

  def count(jaxpr) -> int:
    total = 0
    for eqn in jaxpr.eqns:
      name = eqn.primitive.name
      if name == "conv_general_dilated":
        total += _conv_flops(eqn, count_padding)
      elif name == "dot_general":
        lhs, out = eqn.invars[0].aval, eqn.outvars[0].aval
        (contracting, _), _ = eqn.params["dimension_numbers"]
        total += 2 * int(np.prod(out.shape)) * int(np.prod([lhs.shape[d]
                                                            for d in contracting]))
      subs = [item.jaxpr if isinstance(item, jex_core.ClosedJaxpr) else item
              for v in eqn.params.values()
              for item in (v if isinstance(v, (tuple, list)) else (v,))
              if isinstance(item, (jex_core.ClosedJaxpr, jex_core.Jaxpr))]
      if subs:  # a cond runs one branch: count the costliest; a call runs its body once
        total += max(count(s) for s in subs) * int(eqn.params.get("length", 1))
    return total

  return count(closed_jaxpr.jaxpr)


def _hlo_index(hlo_text: str) -> tuple[dict, dict]:
  """{instruction name: its HLO line}, {computation name: its body} of a compiled module."""
  lines, bodies, current = {}, {}, None
  for line in hlo_text.splitlines():
    if line and not line[0].isspace() and line.rstrip().endswith("{"):
      current = line.split()[1 if line.startswith("ENTRY") else 0].lstrip("%")
      bodies[current] = []
      continue
    match = re.match(r"^\s*(?:ROOT )?%?([\w.\-]+) = (.*)$", line)
    if match:
      lines[match.group(1)] = match.group(2)
      if current is not None:
        bodies[current].append(match.group(2))
  return lines, {k: "\n".join(v) for k, v in bodies.items()}


def _op_kind(line: str, bodies: dict) -> str:
  """'conv', 'dot' or 'other': what an HLO instruction (or the fusion it calls) computes."""
  called = re.findall(r"(?:calls|to_apply)=%?([\w.\-]+)", line)
  text = line + "\n".join(bodies.get(c, "") for c in called)
  if "convolution(" in text:
    return "conv"
  if " dot(" in text:
    return "dot"
  return "other"


def _describe(line: str) -> str:
  """The output shape, window and source layer of an HLO line, briefly."""
  shape = line.split(" ", 1)[0].split("{")[0]
  window = re.search(r"window=\{([^}]*)\}", line)
  source = re.search(r'op_name="([^"]*)"', line)
  parts = [shape, f"window {window.group(1)}" if window else ""]
  if source:  # after the jit(...) name: transpose(jvp(...)) marks the backward pass
    parts.append("/".join(source.group(1).split("/")[1:]))
  return " ".join(p for p in parts if p)


def trace_ops(fn, compiled, logdir: str) -> dict:
  """Runs fn() once under jax.profiler and sums the time of each HLO op of `compiled`.

  XLA:CPU records one event per executed thunk (an HLO op or fusion); ops can run on several
  threads at once, so the sum can exceed the wall time. Returns milliseconds by kind (conv,
  dot, other), their total, and the largest single op with a description.
  """
  import jax  # pylint: disable=g-import-not-at-top
  with jax.profiler.trace(logdir, create_perfetto_trace=True):
    fn()
  path = max(pathlib.Path(logdir).rglob("perfetto_trace.json.gz"), key=os.path.getmtime)
  with gzip.open(path) as f:
    trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  lines, bodies = _hlo_index(compiled.as_text())
  per_op = collections.Counter()
  for e in events:
    op = (e.get("args") or {}).get("hlo_op")
    if e.get("ph") == "X" and op in lines:
      per_op[op] += e.get("dur", 0) / 1e3  # microseconds -> ms
  kinds = collections.Counter()
  for op, ms in per_op.items():
    kinds[_op_kind(lines[op], bodies)] += ms
  top, top_ms = per_op.most_common(1)[0] if per_op else ("none", 0.0)
  return {"conv_ms": kinds["conv"], "dot_ms": kinds["dot"], "other_ms": kinds["other"],
          "total_ms": sum(kinds.values()), "top_ms": top_ms,
          "top_op": f"{top}: {_describe(lines.get(top, ''))}"}


def jax_matmul_peak(dtype: str, size: int, repeats: int) -> float:
  """Best FLOP/s of a jitted jnp.dot (size x size) @ (size x size) in `dtype`."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32).astype(dtype)
  dot = jax.jit(jnp.dot)
  return timing.matmul_peak(lambda: dot(a, a).block_until_ready(), size, repeats)


PROFILES = ("none", "trace", "full", "gpu")


def jax_worker(sizes: Sizes, dtype: str, profile: str) -> dict:
  """Times the real train and predict steps under this process's XLA_FLAGS.

  profile 'trace': also where the time goes (backbone alone vs the whole forward, and a
  jax.profiler trace of one inference call and one train step, summed by HLO op kind);
  'full': that, and the FLOP counts, the fp32 matmul peak, the input-wait split on the real
  iterator and the augmentation's cost; 'gpu': the FLOP counts and the matmul peak in this
  dtype (for the utilisation), nothing CPU-specific.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from mlt_flax import augment  # pylint: disable=g-import-not-at-top
  from mlt_flax import aus  # pylint: disable=g-import-not-at-top
  from mlt_flax import input_pipeline  # pylint: disable=g-import-not-at-top
  from mlt_flax import train  # pylint: disable=g-import-not-at-top

  lap = _Laps()
  config = _bench_config(sizes, dtype)
  num_labels = len(aus.label_space(config.data.label_space))
  frame = config.data.frame_size
  dp = train.DataParallel()
  local_train = dp.local_batch_size(sizes.train_batch)
  local_infer = dp.local_batch_size(sizes.infer_batch)
  model, lr_fns, tx = train.build(config, STEPS_PER_EPOCH)
  state = jax.jit(lambda: train.create_train_state(config.seed, model, tx, sizes.image_size),
                  out_shardings=dp.replicated)()
  params_count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(
      (state.params, state.batch_stats)))
  rng = np.random.default_rng(0)

  def host_batch(b):  # what the input pipeline yields: uint8 frames at native size
    return {"image": rng.integers(0, 256, (b, frame, frame, 3), np.uint8),
            "labels": rng.integers(0, 2, (b, num_labels)).astype(np.float32)}

  out = {"dtype": dtype, "xla_flags": os.environ.get("XLA_FLAGS", ""),
         "devices": jax.device_count(), "device_kind": jax.devices()[0].device_kind,
         "params": params_count, "versions": _versions()}

  # Inference first: the train step donates (consumes) the state.
  predict_fn = dp.map(functools.partial(train.predict_step, model=model, config=config),
                      out_specs=jax.P(train.AXIS), donate_state=False)
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  infer_batch = dp.to_global({"image": host_batch(local_infer)["image"]})
  start = time.perf_counter()
  predict = predict_fn.lower(variables, infer_batch).compile()
  out["compile_infer_s"] = time.perf_counter() - start
  _, infer_s = timing.median_times(lambda: predict(variables, infer_batch).block_until_ready(),
                             sizes.warmup, sizes.timed)
  out.update(infer_s=infer_s, infer_images_per_s=sizes.infer_batch / infer_s)
  out["xla_flops_infer"] = _xla_flops(predict) / sizes.infer_batch
  lap("setup_and_inference")

  tracing = profile in ("trace", "full")
  if tracing:
    out.update(_profile_inference(sizes, config, variables, num_labels))
    with tempfile.TemporaryDirectory() as logdir:
      out["trace_infer"] = trace_ops(
          lambda: predict(variables, infer_batch).block_until_ready(), predict, logdir)
    lap("profile_inference")
  if profile in ("full", "gpu"):
    out.update(_flops(config, num_labels))
    lap("flops")

  step_fn = dp.map(functools.partial(
      train.train_step, model=model, tx=tx, config=config,
      weights=jnp.ones(num_labels), lr_fns=lr_fns,
      allow_mixup=not input_pipeline.has_partial_labels(config)),
                   out_specs=(jax.P(), jax.P(), jax.P()), donate_state=True)
  train_batch = dp.to_global(host_batch(local_train))
  start = time.perf_counter()
  step = step_fn.lower(state, train_batch).compile()
  out["compile_train_s"] = time.perf_counter() - start
  out["xla_flops_train"] = _xla_flops(step) / sizes.train_batch

  def one_step(batch):
    nonlocal state
    state, _, finite = step(state, batch)
    bool(finite)  # what the training loop does after every step: wait for the result

  _, train_s = timing.median_times(lambda: one_step(train_batch), sizes.warmup, sizes.timed)
  out.update(train_step_s=train_s, train_images_per_s=sizes.train_batch / train_s)
  lap("train")
  if tracing:
    with tempfile.TemporaryDirectory() as logdir:
      out["trace_train"] = trace_ops(lambda: one_step(train_batch), step, logdir)
    lap("profile_training")

  if profile == "full":
    # Input wait vs compute, on the real tf.data iterator as train_and_evaluate uses it.
    if _dataset_ready(config):
      batches = input_pipeline.train_iterator(config, local_batch_size=local_train)
      out["input_source"] = f"tf.data train_iterator on {config.data.data_dir}"
    else:
      batches = iter(lambda: host_batch(local_train), None)
      out["input_source"] = "synthetic in-memory batches (no dataset built)"
    one_step(dp.to_global(next(batches)))  # fills tf.data's buffers and prefetch
    waits, computes = [], []
    for _ in range(sizes.input_steps):
      start = time.perf_counter()
      batch = dp.to_global(next(batches))
      mid = time.perf_counter()
      one_step(batch)
      waits.append(mid - start)
      computes.append(time.perf_counter() - mid)
    out.update(input_wait_s=statistics.median(waits), compute_s=statistics.median(computes))
    lap("input_wait_split")

    aug = jax.jit(functools.partial(augment.augment, cfg=config.augment,
                                    size=sizes.image_size, allow_mixup=True))
    frames = jnp.asarray(train_batch["image"])
    labels = jnp.asarray(train_batch["labels"])
    _, out["augment_s"] = timing.median_times(
        lambda: jax.block_until_ready(aug(jax.random.key(0), frames, labels)), sizes.warmup,
        sizes.augment_repeats)
    pre = jax.jit(functools.partial(augment.preprocess, size=sizes.image_size))
    infer_frames = jnp.asarray(infer_batch["image"])
    _, out["preprocess_s"] = timing.median_times(
        lambda: pre(infer_frames).block_until_ready(), sizes.warmup, sizes.augment_repeats)

    lap("augment")
    out["matmul_fp32_flops_per_s"] = jax_matmul_peak("float32", sizes.matmul_size,
                                                     sizes.matmul_repeats)
  if dtype == "bfloat16" or profile == "gpu":
    short = {"bfloat16": "bf16", "float32": "fp32"}[dtype]
    out[f"matmul_{short}_flops_per_s"] = jax_matmul_peak(dtype, sizes.matmul_size,
                                                         sizes.matmul_repeats)
  lap("matmul")
  out["worker_sections_s"] = lap.seconds
  return out


def _xla_flops(compiled) -> float:
  """XLA's own FLOP count of a compiled computation (NaN if the backend gives none)."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return float("nan")
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  return float((analysis or {}).get("flops", float("nan")))


def _eval_model(config, num_labels):
  """The same model without the mapped BatchNorm axis: runs outside shard_map."""
  from mlt_flax import models  # pylint: disable=g-import-not-at-top
  return models.build_model(config.model, num_labels)


def _flops(config, num_labels) -> dict:
  """Forward and training FLOPs per image, counted from the jaxprs at batch 1."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from mlt_flax import losses  # pylint: disable=g-import-not-at-top
  model = _eval_model(config, num_labels)
  s = config.model.image_size
  x = jax.ShapeDtypeStruct((1, s, s, 3), jnp.float32)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(x.shape), False))
  forward = jax.make_jaxpr(lambda v, im: model.apply(v, im, train=False))(variables, x)

  def loss(params, stats, im, y):
    logits, _ = model.apply({"params": params, "batch_stats": stats}, im, train=True,
                            rngs={"dropout": jax.random.key(0)}, mutable=["batch_stats"])
    return losses.mlt_loss(logits, y, jnp.ones_like(y), jnp.ones(num_labels), config.loss)[0]

  y = jax.ShapeDtypeStruct((1, num_labels), jnp.float32)
  grad = jax.make_jaxpr(jax.grad(loss))(variables["params"], variables["batch_stats"], x, y)
  return {"flops_forward": jaxpr_flops(forward),
          "flops_forward_with_padding": jaxpr_flops(forward, count_padding=True),
          "flops_train": jaxpr_flops(grad)}


def _profile_inference(sizes, config, variables, num_labels) -> dict:
  """The backbone's forward alone vs the whole model's (float inputs at model size)."""
  import jax  # pylint: disable=g-import-not-at-top
  eval_model = _eval_model(config, num_labels)
  s = sizes.image_size
  images = jax.random.uniform(jax.random.key(1), (sizes.infer_batch, s, s, 3), minval=-1)
  backbone_vars = {c: variables[c]["backbone"] for c in ("params", "batch_stats")}
  backbone = jax.jit(lambda v, x: eval_model.backbone.apply(v, x, False))
  whole = jax.jit(lambda v, x: eval_model.apply(v, x, train=False))
  _, backbone_s = timing.median_times(lambda: backbone(backbone_vars, images).block_until_ready(),
                                sizes.warmup, sizes.timed)
  _, whole_s = timing.median_times(lambda: whole(variables, images).block_until_ready(),
                             sizes.warmup, sizes.timed)
  return {"prof_backbone_fwd_s": backbone_s, "prof_whole_fwd_s": whole_s}


def input_worker(sizes: Sizes) -> dict:
  """Frames/s of the input pipeline alone: decode-only tf.data vs the full train_iterator."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from mlt_flax import input_pipeline  # pylint: disable=g-import-not-at-top
  config = _bench_config(sizes, "float32")
  batch = sizes.train_batch
  if _dataset_ready(config):
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
  decoded = encoded.map(lambda jpeg: tf.io.decode_jpeg(jpeg, channels=3),
                        num_parallel_calls=tf.data.AUTOTUNE)
  decoded = iter(tfds.as_numpy(decoded.batch(batch).prefetch(tf.data.AUTOTUNE)))
  out = {"input_source": source,
         "decode_frames_per_s": _frames_per_s(decoded, batch, sizes.input_frames)}
  out["train_iterator_frames_per_s"] = (
      _frames_per_s(full, batch, sizes.input_frames) if full else out["decode_frames_per_s"])
  return out


def _frames_per_s(iterator, batch: int, frames: int) -> float:
  next(iterator)  # first batch: opening files, filling the shuffle buffer
  steps = max(frames // batch, 1)
  start = time.perf_counter()
  for _ in range(steps):
    next(iterator)
  return steps * batch / (time.perf_counter() - start)


# ----------------------------------------------------------------------------------------
# The parent: runs the workers one at a time (two cores: never two at once), joins the table.
# ----------------------------------------------------------------------------------------


def _versions() -> dict:
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


def _cpu_model() -> str:
  try:
    text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"Model name:\s*(.+)", text)
    return match.group(1).strip() if match else platform.processor()
  except (OSError, subprocess.CalledProcessError):
    return platform.processor()


def _run_worker(args: list[str], xla_flags: str | None, tmp: pathlib.Path, name: str) -> dict:
  """Runs `python -m <args>` with its own XLA_FLAGS; returns the JSON it writes."""
  env = dict(os.environ)
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  if xla_flags is not None:
    env["XLA_FLAGS"] = xla_flags
  out = tmp / f"{name}.json"
  cmd = [sys.executable, "-m", *args, f"--out={out}"]
  load_before = os.getloadavg()[0]
  start = time.perf_counter()
  log = []
  with subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True) as proc:
    for line in proc.stdout:  # echo the worker's progress lines, keep the rest for errors
      log.append(line)
      if line.startswith(PROGRESS_PREFIX):
        print(f"  {name}:{line.rstrip()}", file=sys.stderr, flush=True)
    returncode = proc.wait()
  if returncode != 0:
    raise RuntimeError(f"worker {name} failed ({returncode}): {' '.join(cmd)}\n"
                       f"{''.join(log)[-6000:]}")
  seconds = time.perf_counter() - start
  print(f"  {name}: {seconds:.0f} s", file=sys.stderr, flush=True)
  result = json.loads(out.read_text())
  result["worker_wall_s"] = round(seconds, 1)
  result["worker_load"] = (round(load_before, 2), round(os.getloadavg()[0], 2))
  return result


def _metric_figures(sizes: Sizes) -> dict:
  """benchmarks/metric_speed's table, run as it is (it has only a main), parsed."""
  cmd = [sys.executable, "-m", "benchmarks.metric_speed", f"--frames={sizes.metric_frames}",
         f"--videos={sizes.metric_videos}", f"--repeats={sizes.metric_repeats}"]
  start = time.perf_counter()
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                        timeout=WORKER_TIMEOUT_S, check=True)
  print(f"  metric_speed: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
  figures = {}
  for line in proc.stdout.splitlines():
    match = re.match(r"^(\S.*?)\s{2,}(\d+\.\d+)(?:\s{2}(.*))?$", line)
    if match:
      figures[match.group(1)] = (float(match.group(2)), match.group(3) or "")
  def find(prefix):
    return next(v for k, v in figures.items() if k.startswith(prefix))
  tune_s, tune_note = find("tune_thresholds")
  extrapolated = re.search(r"~(\d+(?:\.\d+)?) s", tune_note)
  return {"f1_s": find("f1_scores (ours)")[0], "sklearn_s": find("sklearn f1_score")[0],
          "smooth_f1_s": find("smooth + f1_scores")[0], "tune_s": tune_s,
          "tune_sklearn_s": float(extrapolated.group(1)) if extrapolated else float("nan"),
          "raw": proc.stdout}


def numpy_matmul_peak(size: int, repeats: int) -> float:
  a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
  return timing.matmul_peak(lambda: a @ a, size, repeats)


def _ratio(a, b) -> float:
  return a / b if b else float("nan")


def _target(ok: bool) -> str:
  return "PASS" if ok else "MISS"


def _trace_row(t: dict, wall_s: float) -> tuple:
  """Conv vs all op time; op time / wall time > 1 where ops overlap on several threads, and
  well under 1 where ops run asynchronously (Eigen convolutions: the trace holds their launch
  only), in which case the conv share is not measured."""
  return (f"{t['conv_ms']:.1f}", f"{t['total_ms']:.1f}", _ratio(t["conv_ms"], t["total_ms"]),
          f"dot {t['dot_ms']:.1f} ms, other (BN, elementwise, copies, optimiser) "
          f"{t['other_ms']:.1f} ms; op time / wall time "
          f"{_ratio(t['total_ms'], wall_s * 1e3):.2f}")


def _top_row(t: dict) -> tuple:
  return (f"{t['top_ms']:.1f}", f"{t['total_ms']:.1f}", _ratio(t["top_ms"], t["total_ms"]),
          t["top_op"][:TOP_OP_CHARS])


def build_rows(r: dict, sizes: Sizes) -> list[tuple[str, str, str, str, float, str]]:
  """(key, what, value, reference, ratio, note) per ROWS entry, from the workers' results."""
  jd, jy, jb = r["jax_default"], r["jax_ynn"], r["jax_bf16"]
  k32, kb = r["keras_fp32"], r["keras_bf16"]
  inp, met = r["input"], r["metric"]
  best32 = max(jy["matmul_fp32_flops_per_s"], k32["matmul_flops_per_s"], r["numpy_peak"])
  best16 = max(jb["matmul_bf16_flops_per_s"], kb["matmul_flops_per_s"])
  f_fwd, f_train = jy["flops_forward"], jy["flops_train"]
  g = 1e9
  ms = 1e3
  # The targets hold JAX to its faster XLA flag setting, per mode.
  jt = max(jd, jy, key=lambda x: x["train_images_per_s"])
  ji = max(jd, jy, key=lambda x: x["infer_images_per_s"])
  setting = lambda x: "ynn flag" if x is jy else "default flags"
  train_target = _ratio(jt["train_images_per_s"], k32["train_images_per_s"])
  infer_target = _ratio(ji["infer_images_per_s"], k32["infer_images_per_s"])
  input_rate = inp["train_iterator_frames_per_s"]
  f = lambda x, d=1: f"{x:.{d}f}"
  rows = {
      "params": (f"{jy['params']:,}", f"{k32['params']:,}",
                 _ratio(jy["params"], k32["params"]), "same model: ratio 1.00 +-0.01"),
      "train_fp32_default": (f(jd["train_images_per_s"], 2), f(k32["train_images_per_s"], 2),
                             _ratio(jd["train_images_per_s"], k32["train_images_per_s"]),
                             "augmentation included in JAX"),
      "train_fp32_ynn": (f(jy["train_images_per_s"], 2), f(k32["train_images_per_s"], 2),
                         _ratio(jy["train_images_per_s"], k32["train_images_per_s"]), ""),
      "train_fp32_best": (f(jt["train_images_per_s"], 2), f(k32["train_images_per_s"], 2),
                          train_target, f"target >= 1.0: {_target(train_target >= 1.0)} "
                          f"({setting(jt)})"),
      "infer_fp32_best": (f(ji["infer_images_per_s"], 2), f(k32["infer_images_per_s"], 2),
                          infer_target, f"target >= 1.0: {_target(infer_target >= 1.0)} "
                          f"({setting(ji)})"),
      "infer_fp32_default": (f(jd["infer_images_per_s"], 2), f(k32["infer_images_per_s"], 2),
                             _ratio(jd["infer_images_per_s"], k32["infer_images_per_s"]), ""),
      "infer_fp32_ynn": (f(jy["infer_images_per_s"], 2), f(k32["infer_images_per_s"], 2),
                         _ratio(jy["infer_images_per_s"], k32["infer_images_per_s"]), ""),
      "train_bf16": (f(jb["train_images_per_s"], 2), f(kb["train_images_per_s"], 2),
                     _ratio(jb["train_images_per_s"], kb["train_images_per_s"]),
                     f"JAX flags: {jb['xla_flags'] or 'default'}"),
      "infer_bf16": (f(jb["infer_images_per_s"], 2), f(kb["infer_images_per_s"], 2),
                     _ratio(jb["infer_images_per_s"], kb["infer_images_per_s"]), ""),
      "flag_train": (f(jy["train_images_per_s"], 2), f(jd["train_images_per_s"], 2),
                     _ratio(jy["train_images_per_s"], jd["train_images_per_s"]),
                     f"chosen: {r['chosen_flags'] or 'default'}"),
      "flag_infer": (f(jy["infer_images_per_s"], 2), f(jd["infer_images_per_s"], 2),
                     _ratio(jy["infer_images_per_s"], jd["infer_images_per_s"]), ""),
      "peak_fp32": (f(jy["matmul_fp32_flops_per_s"] / g), f(r["numpy_peak"] / g),
                    _ratio(jy["matmul_fp32_flops_per_s"], r["numpy_peak"]),
                    f"{sizes.matmul_size}^2, best of {sizes.matmul_repeats}"),
      "peak_tf_fp32": (f(k32["matmul_flops_per_s"] / g), f(r["numpy_peak"] / g),
                       _ratio(k32["matmul_flops_per_s"], r["numpy_peak"]), ""),
      "peak_bf16": (f(jb["matmul_bf16_flops_per_s"] / g), f(kb["matmul_flops_per_s"] / g),
                    _ratio(jb["matmul_bf16_flops_per_s"], kb["matmul_flops_per_s"]), ""),
      "flops_fwd": (f(f_fwd / g, 3), f(jy["xla_flops_infer"] / g, 3),
                    _ratio(f_fwd, jy["xla_flops_infer"]),
                    f"with padding taps: {jy['flops_forward_with_padding'] / g:.3f}"),
      "flops_train": (f(f_train / g, 3), f(TRAIN_FLOPS_FACTOR * f_fwd / g, 3),
                      _ratio(f_train, TRAIN_FLOPS_FACTOR * f_fwd),
                      f"XLA cost_analysis: {jy['xla_flops_train'] / g:.3f}"),
      "mfu_train": (f(f_train * jt["train_images_per_s"] / best32, 3),
                    f(f_train * k32["train_images_per_s"] / best32, 3), train_target,
                    f"peak {best32 / g:.0f} GFLOP/s; JAX {setting(jt)}"),
      "mfu_infer": (f(f_fwd * ji["infer_images_per_s"] / best32, 3),
                    f(f_fwd * k32["infer_images_per_s"] / best32, 3), infer_target,
                    f"JAX {setting(ji)}"),
      "mfu_train_bf16": (f(f_train * jb["train_images_per_s"] / best16, 3),
                         f(f_train * kb["train_images_per_s"] / best16, 3),
                         _ratio(jb["train_images_per_s"], kb["train_images_per_s"]),
                         f"peak {best16 / g:.0f} GFLOP/s"),
      "compile_train": (f(jy["compile_train_s"]), f(k32["train_first_call_s"]),
                        _ratio(jy["compile_train_s"], k32["train_first_call_s"]),
                        f"Keras jit_compile={k32['jit_compile']}"),
      "compile_infer": (f(jy["compile_infer_s"]), f(k32["infer_first_call_s"]),
                        _ratio(jy["compile_infer_s"], k32["infer_first_call_s"]), ""),
      "step_split": (f(jy["input_wait_s"] * ms), f(jy["compute_s"] * ms),
                     _ratio(jy["input_wait_s"], jy["compute_s"]), jy["input_source"]),
      "input_vs_train": (f(input_rate, 0), f(jt["train_images_per_s"], 2),
                         _ratio(input_rate, jt["train_images_per_s"]),
                         f"target > 1: {_target(input_rate > jt['train_images_per_s'])}"),
      "input_decode": (f(inp["decode_frames_per_s"], 0), f(input_rate, 0),
                       _ratio(inp["decode_frames_per_s"], input_rate), inp["input_source"]),
      "augment": (f(jy["augment_s"] * ms), f(jy["train_step_s"] * ms),
                  _ratio(jy["augment_s"], jy["train_step_s"]), "timed alone, same batch"),
      "preprocess": (f(jy["preprocess_s"] * ms), f(jy["infer_s"] * ms),
                     _ratio(jy["preprocess_s"], jy["infer_s"]), ""),
      "prof_backbone_fwd": (f(jy["prof_backbone_fwd_s"] * ms), f(jy["prof_whole_fwd_s"] * ms),
                            _ratio(jy["prof_backbone_fwd_s"], jy["prof_whole_fwd_s"]),
                            "float inputs, no resize; the rest is the MLT head"),
      "prof_infer_ynn": _trace_row(jy["trace_infer"], jy["infer_s"]),
      "prof_infer_default": _trace_row(jd["trace_infer"], jd["infer_s"]),
      "prof_train_ynn": _trace_row(jy["trace_train"], jy["train_step_s"]),
      "prof_train_default": _trace_row(jd["trace_train"], jd["train_step_s"]),
      "prof_top_ynn": _top_row(jy["trace_train"]),
      "prof_top_default": _top_row(jd["trace_train"]),
      "metric_f1": (f(met["f1_s"], 3), f(met["sklearn_s"], 3),
                    _ratio(met["sklearn_s"], met["f1_s"]),
                    f"ratio = speed-up; {sizes.metric_frames:,} frames"),
      "metric_smooth_f1": (f(met["smooth_f1_s"], 3), "1.000", _ratio(met["smooth_f1_s"], 1.0),
                           f"target < 1 s: {_target(met['smooth_f1_s'] < 1.0)}"),
      "metric_tune": (f(met["tune_s"], 3), f(met["tune_sklearn_s"], 0),
                      _ratio(met["tune_sklearn_s"], met["tune_s"]), "ratio = speed-up"),
      "load": (f(r["load_start"], 2), f(r["load_end"], 2),
               _ratio(r["load_end"], r["load_start"]), f"{os.cpu_count()} CPUs"),
  }
  return [(key, what, *rows[key]) for key, what in ROWS]


def markdown_table(rows) -> str:
  lines = ["| key | measurement (value \\| reference) | value | reference | ratio | note |",
           "|---|---|---:|---:|---:|---|"]
  for key, what, value, reference, ratio, note in rows:
    lines.append(f"| {key} | {what} | {value} | {reference} | {ratio:.2f} | {note} |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="tiny sizes: a ~2 minute check")
  parser.add_argument("--gpu", action="store_true",
                      help="accelerator mode (benchmarks/gpu.sh): the paper's model in bf16, "
                      "train and predict steps only, in this process")
  parser.add_argument("--train_batch", type=int, default=0, help="override the mode's batch")
  parser.add_argument("--infer_batch", type=int, default=0, help="override the mode's batch")
  parser.add_argument("--markdown_out", default=DEFAULT_MARKDOWN,
                      help="the table and its context, as markdown (JSON beside it)")
  # Worker mode (internal): run one measurement in this process and write JSON to --out.
  parser.add_argument("--worker", choices=("jax", "input"), default=None,
                      help=argparse.SUPPRESS)
  parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
  parser.add_argument("--profile", choices=PROFILES, default="none", help=argparse.SUPPRESS)
  parser.add_argument("--out", default="", help=argparse.SUPPRESS)
  args = parser.parse_args()
  sizes = GPU if args.gpu else QUICK if args.quick else FULL
  sizes = dataclasses.replace(sizes, train_batch=args.train_batch or sizes.train_batch,
                              infer_batch=args.infer_batch or sizes.infer_batch)
  overrides = [f"--{k}={getattr(args, k)}" for k in ("train_batch", "infer_batch")
               if getattr(args, k)]

  if args.worker:
    os.chdir(REPO)  # DATA_DIR is relative to the repository
    result = (jax_worker(sizes, args.dtype, args.profile) if args.worker == "jax"
              else input_worker(sizes))
    pathlib.Path(args.out).write_text(json.dumps(result, indent=1, default=float))
    return
  if args.gpu:
    _gpu_report(sizes, args.markdown_out)
    return

  started = datetime.datetime.now().astimezone()
  base_flags = os.environ.get("XLA_FLAGS", "").strip()
  ynn_flags = f"{base_flags} {YNN_FLAG}".strip()
  mode = (["--quick"] if args.quick else []) + overrides
  results = {"load_start": os.getloadavg()[0], "sizes": dataclasses.asdict(sizes)}
  print(f"benchmarks.run {'--quick ' if args.quick else ''}started {started:%Y-%m-%d %H:%M %Z}"
        f"; load average {os.getloadavg()}", file=sys.stderr, flush=True)
  results["numpy_peak"] = numpy_matmul_peak(sizes.matmul_size, sizes.matmul_repeats)
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    worker = ["benchmarks.run", "--worker=jax", *mode]
    results["jax_default"] = _run_worker(worker + ["--profile=trace"], base_flags, tmp,
                                         "jax_default")
    results["jax_ynn"] = _run_worker(worker + ["--profile=full"], ynn_flags, tmp, "jax_ynn")
    faster_ynn = (results["jax_ynn"]["train_images_per_s"] >=
                  results["jax_default"]["train_images_per_s"])
    results["chosen_flags"] = ynn_flags if faster_ynn else base_flags
    results["jax_bf16"] = _run_worker(worker + ["--dtype=bfloat16"], results["chosen_flags"],
                                      tmp, "jax_bf16")
    peer = ["benchmarks.keras_peer", f"--image_size={sizes.image_size}",
            f"--backbone={sizes.backbone}", f"--train_batch={sizes.train_batch}",
            f"--infer_batch={sizes.infer_batch}", f"--warmup={sizes.warmup}",
            f"--timed_steps={sizes.timed}", f"--matmul_size={sizes.matmul_size}",
            f"--matmul_repeats={sizes.matmul_repeats}"]
    results["keras_fp32"] = _run_worker(peer + ["--policy=float32"], None, tmp, "keras_fp32")
    results["keras_bf16"] = _run_worker(peer + ["--policy=mixed_bfloat16"], None, tmp,
                                        "keras_bf16")
    results["input"] = _run_worker(["benchmarks.run", "--worker=input", *mode], None, tmp,
                                   "input")
  results["metric"] = _metric_figures(sizes)
  results["load_end"] = os.getloadavg()[0]
  rows = build_rows(results, sizes)
  table = markdown_table(rows)
  header = _header(started, sizes, args.quick, results)
  print(header)
  print(table)
  out = pathlib.Path(args.markdown_out)
  if not out.is_absolute():
    out = REPO / out
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(header + "\n" + table + "\n")
  out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=float))
  print(f"\nwritten: {out} (and {out.with_suffix('.json').name})")


def _gpu_report(sizes: Sizes, markdown_out: str) -> None:
  """The paper's model in bf16 on this process's accelerator: images/s and utilisation."""
  started = datetime.datetime.now().astimezone()
  r = jax_worker(sizes, "bfloat16", "gpu")
  peak = r["matmul_bf16_flops_per_s"]
  g = 1e9
  mfu_train = r["flops_train"] * r["train_images_per_s"] / peak
  mfu_infer = r["flops_forward"] * r["infer_images_per_s"] / peak
  rows = [
      ("gpu_train", f"train img/s bf16, batch {sizes.train_batch} | MFU",
       f"{r['train_images_per_s']:.0f}", f"{mfu_train:.3f}", mfu_train,
       "MFU vs the measured bf16 matmul"),
      ("gpu_infer", f"inference img/s bf16, batch {sizes.infer_batch} | MFU",
       f"{r['infer_images_per_s']:.0f}", f"{mfu_infer:.3f}", mfu_infer, ""),
      ("gpu_peak", f"matmul peak bf16 TFLOP/s, {sizes.matmul_size}^2 | train GFLOP/image",
       f"{peak / 1e12:.0f}", f"{r['flops_train'] / g:.2f}", float("nan"), "best of n"),
      ("gpu_compile", "compile s: train step | inference", f"{r['compile_train_s']:.1f}",
       f"{r['compile_infer_s']:.1f}", _ratio(r["compile_train_s"], r["compile_infer_s"]), ""),
  ]
  header = (f"`python -m benchmarks.run --gpu` — {started:%Y-%m-%d %H:%M %Z}\n"
            f"devices: {r['devices']} x {r['device_kind']}; versions: "
            + ", ".join(f"{k} {v}" for k, v in r["versions"].items()) + "\n")
  table = markdown_table(rows)
  print(header)
  print(table)
  out = pathlib.Path(markdown_out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(header + "\n" + table + "\n")
  out.with_suffix(".json").write_text(json.dumps(r, indent=1, default=float))


def _header(started, sizes: Sizes, quick: bool, results: dict) -> str:
  versions = results["jax_ynn"]["versions"]
  command = f"python -m benchmarks.run{' --quick' if quick else ''}"
  return "\n".join([
      f"`{command}` — {started:%Y-%m-%d %H:%M %Z}",
      f"machine: {_cpu_model()}, {os.cpu_count()} CPUs; "
      f"JAX devices: {results['jax_ynn']['devices']} x {results['jax_ynn']['device_kind']}",
      "versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
      f"sizes: {sizes.backbone} at {sizes.image_size}, train batch {sizes.train_batch}, "
      f"inference batch {sizes.infer_batch}; median of {sizes.timed} timed calls after "
      f"{sizes.warmup} warm-up; load average (1, 5, 15 min) at end {os.getloadavg()}",
      f"XLA_FLAGS: default = '{results['jax_default']['xla_flags']}', "
      f"ynn = '{results['jax_ynn']['xla_flags']}'",
      "workers (wall s, 1-min load average before -> after): " + "; ".join(
          f"{k} {v['worker_wall_s']:.0f} s, {v['worker_load'][0]:.1f} -> "
          f"{v['worker_load'][1]:.1f}" for k, v in results.items()
          if isinstance(v, dict) and "worker_load" in v),
      "",
  ])


if __name__ == "__main__":
  main()
