"""The benchmark's table: one row per figure, read as value | reference and their ratio.

Every row is (key, what, value, reference, ratio, note): `build_rows` makes them from the
results of a CPU run's workers (benchmarks/run.py), in the order of ROWS, with the targets
stated PASS or MISS in the note; `gpu_rows` from the one worker of a --gpu run.
`markdown_table` prints them; `header` says when, on what and at which sizes; `write` keeps
both as markdown with every raw figure in JSON beside it.
"""

import os
import pathlib
import platform
import re
import subprocess

from benchmarks import cli
from benchmarks import flops
from benchmarks import plans

TOP_OP_CHARS = 160  # the table's description of the largest op, cut to this
GIGA = 1e-9  # FLOP -> GFLOP
MILLI = 1e3  # s -> ms

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
    ("prof_infer", "trace on 1 core, inference: conv op ms | all op ms"),
    ("prof_train", "trace on 1 core, train step: conv op ms | all op ms"),
    ("prof_cover_infer", "trace on 1 core, inference: all op ms | wall ms"),
    ("prof_cover_train", "trace on 1 core, train step: all op ms | wall ms"),
    ("prof_rate_infer", "trace on 1 core, inference: conv GFLOP/s | that core's matmul peak"),
    ("prof_rate_train", "trace on 1 core, train step: conv GFLOP/s | that core's matmul peak"),
    ("prof_top", "trace on 1 core, train step: largest single op ms | all op ms"),
    ("infer_export_jax", "inference img/s fp32, same rounds: JAX | Keras"),
    ("infer_export_folded", "inference img/s fp32, same rounds: JAX, BatchNorm folded | Keras"),
    ("infer_export_ort", "inference img/s fp32, same rounds: ONNX Runtime | Keras"),
    ("infer_export_best", "TARGET inference img/s fp32, fastest serving path | Keras"),
    ("metric_f1", "metric s: f1_scores (ours) | sklearn per-AU f1_score"),
    ("metric_smooth_f1", "metric s: smooth + f1_scores | target 1 s"),
    ("metric_tune", "metric s: tune_thresholds | sklearn loop (extrapolated)"),
    ("load", "load average (1 min): start | end"),
)


def build_rows(r: dict, sizes: plans.Sizes) -> list[tuple[str, str, str, str, float, str]]:
  """(key, what, value, reference, ratio, note) per ROWS entry, from the workers' results.

  r: {"jax_default", "jax_ynn", "jax_bf16", "keras_fp32", "keras_bf16", "input", "metric":
  each worker's JSON dict; "numpy_peak", "chosen_flags", "load_start", "load_end"}.
  """
  jd, jy, jb, jt1 = r["jax_default"], r["jax_ynn"], r["jax_bf16"], r["jax_trace"]
  k32, kb = r["keras_fp32"], r["keras_bf16"]
  inp, met = r["input"], r["metric"]
  best32 = max(jy["matmul_fp32_flops_per_s"], k32["matmul_flops_per_s"], r["numpy_peak"])
  best16 = max(jb["matmul_bf16_flops_per_s"], kb["matmul_flops_per_s"])
  f_fwd, f_train = jy["flops_forward"], jy["flops_train"]
  # The targets hold JAX to its faster XLA flag setting, per mode.
  jt = max(jd, jy, key=lambda x: x["train_images_per_s"])
  ji = max(jd, jy, key=lambda x: x["infer_images_per_s"])
  setting = lambda x: "ynn flag" if x is jy else "default flags"
  train_target = _ratio(jt["train_images_per_s"], k32["train_images_per_s"])
  infer_target = _ratio(ji["infer_images_per_s"], k32["infer_images_per_s"])
  input_rate = inp["train_iterator_frames_per_s"]
  train = lambda x: x["train_images_per_s"]
  infer = lambda x: x["infer_images_per_s"]
  rows = {
      "params": (f"{jy['params']:,}", f"{k32['params']:,}",
                 _ratio(jy["params"], k32["params"]), "same model: ratio 1.00 +-0.01"),
      "train_fp32_default": _pair(train(jd), train(k32), "augmentation included in JAX"),
      "train_fp32_ynn": _pair(train(jy), train(k32)),
      "train_fp32_best": _pair(train(jt), train(k32), f"target >= 1.0: "
                               f"{_target(train_target >= 1.0)} ({setting(jt)})"),
      "infer_fp32_best": _pair(infer(ji), infer(k32), f"target >= 1.0: "
                               f"{_target(infer_target >= 1.0)} ({setting(ji)})"),
      "infer_fp32_default": _pair(infer(jd), infer(k32)),
      "infer_fp32_ynn": _pair(infer(jy), infer(k32)),
      "train_bf16": _pair(train(jb), train(kb), f"JAX flags: {jb['xla_flags'] or 'default'}"),
      "infer_bf16": _pair(infer(jb), infer(kb)),
      "flag_train": _pair(train(jy), train(jd), f"chosen: {r['chosen_flags'] or 'default'}"),
      "flag_infer": _pair(infer(jy), infer(jd)),
      "peak_fp32": _pair(jy["matmul_fp32_flops_per_s"], r["numpy_peak"],
                         f"{sizes.matmul_size}^2, best of {sizes.matmul_repeats}",
                         digits=1, unit=GIGA),
      "peak_tf_fp32": _pair(k32["matmul_flops_per_s"], r["numpy_peak"], digits=1, unit=GIGA),
      "peak_bf16": _pair(jb["matmul_bf16_flops_per_s"], kb["matmul_flops_per_s"], digits=1,
                         unit=GIGA),
      "flops_fwd": _pair(f_fwd, jy["xla_flops_infer"], "with padding taps: "
                         f"{jy['flops_forward_with_padding'] * GIGA:.3f}", digits=3,
                         unit=GIGA),
      "flops_train": _pair(f_train, flops.TRAIN_FLOPS_FACTOR * f_fwd, "XLA cost_analysis: "
                           f"{jy['xla_flops_train'] * GIGA:.3f}", digits=3, unit=GIGA),
      "mfu_train": _pair(flops.mfu(f_train, train(jt), best32),
                         flops.mfu(f_train, train(k32), best32),
                         f"peak {best32 * GIGA:.0f} GFLOP/s; JAX {setting(jt)}", digits=3),
      "mfu_infer": _pair(flops.mfu(f_fwd, infer(ji), best32),
                         flops.mfu(f_fwd, infer(k32), best32), f"JAX {setting(ji)}",
                         digits=3),
      "mfu_train_bf16": _pair(flops.mfu(f_train, train(jb), best16),
                              flops.mfu(f_train, train(kb), best16),
                              f"peak {best16 * GIGA:.0f} GFLOP/s", digits=3),
      "compile_train": _pair(jy["compile_train_s"], k32["train_first_call_s"],
                             f"Keras jit_compile={k32['jit_compile']}", digits=1),
      "compile_infer": _pair(jy["compile_infer_s"], k32["infer_first_call_s"], digits=1),
      "step_split": _pair(jy["input_wait_s"], jy["compute_s"], jy["input_source"], digits=1,
                          unit=MILLI),
      "input_vs_train": _pair(input_rate, train(jt), "target > 1: "
                              f"{_target(input_rate > train(jt))}", digits=(0, 2)),
      "input_decode": _pair(inp["decode_frames_per_s"], input_rate, inp["input_source"],
                            digits=0),
      "augment": _pair(jy["augment_s"], jy["train_step_s"], "timed alone, same batch",
                       digits=1, unit=MILLI),
      "preprocess": _pair(jy["preprocess_s"], jy["infer_s"], digits=1, unit=MILLI),
      "prof_backbone_fwd": _pair(jy["prof_backbone_fwd_s"], jy["prof_whole_fwd_s"],
                                 "float inputs, no resize; the rest is the MLT head",
                                 digits=1, unit=MILLI),
      "prof_infer": _trace_row(jt1["trace_infer"]),
      "prof_train": _trace_row(jt1["trace_train"]),
      "prof_cover_infer": _coverage_row(jt1["trace_infer"]),
      "prof_cover_train": _coverage_row(jt1["trace_train"]),
      "prof_rate_infer": _rate_row(jt1["trace_infer"], jt1["matmul_fp32_flops_per_s"]),
      "prof_rate_train": _rate_row(jt1["trace_train"], jt1["matmul_fp32_flops_per_s"]),
      "prof_top": _top_row(jt1["trace_train"]),
      **_export_rows(r["export"]),
      # Speed-ups: reference / value.
      "metric_f1": _pair(met["f1_s"], met["sklearn_s"],
                         f"ratio = speed-up; {sizes.metric_frames:,} frames", digits=3,
                         ratio=_ratio(met["sklearn_s"], met["f1_s"])),
      "metric_smooth_f1": _pair(met["smooth_f1_s"], 1.0,
                                f"target < 1 s: {_target(met['smooth_f1_s'] < 1.0)}",
                                digits=3),
      "metric_tune": _pair(met["tune_s"], met["tune_sklearn_s"], "ratio = speed-up",
                           digits=(3, 0), ratio=_ratio(met["tune_sklearn_s"], met["tune_s"])),
      "load": _pair(r["load_start"], r["load_end"], f"{os.cpu_count()} CPUs", digits=2,
                    ratio=_ratio(r["load_end"], r["load_start"])),
  }
  return [(key, what, *rows[key]) for key, what in ROWS]


def gpu_rows(r: dict, sizes: plans.Sizes) -> list[tuple[str, str, str, str, float, str]]:
  """The rows of a --gpu run: images/s and utilisation against the chip's bf16 matmul."""
  peak = r["matmul_bf16_flops_per_s"]
  mfu_train = flops.mfu(r["flops_train"], r["train_images_per_s"], peak)
  mfu_infer = flops.mfu(r["flops_forward"], r["infer_images_per_s"], peak)
  return [
      ("gpu_train", f"train img/s bf16, batch {sizes.train_batch} | MFU",
       f"{r['train_images_per_s']:.0f}", f"{mfu_train:.3f}", mfu_train,
       "MFU vs the measured bf16 matmul"),
      ("gpu_infer", f"inference img/s bf16, batch {sizes.infer_batch} | MFU",
       f"{r['infer_images_per_s']:.0f}", f"{mfu_infer:.3f}", mfu_infer, ""),
      ("gpu_peak", f"matmul peak bf16 TFLOP/s, {sizes.matmul_size}^2 | train GFLOP/image",
       f"{peak / 1e12:.0f}", f"{r['flops_train'] * GIGA:.2f}", float("nan"), "best of n"),
      ("gpu_compile", "compile s: train step | inference",
       *_pair(r["compile_train_s"], r["compile_infer_s"], digits=1)),
  ]


def markdown_table(rows) -> str:
  """The rows as a markdown table; a '|' inside a cell is escaped, so it stays one cell."""
  lines = ["| key | measurement (value \\| reference) | value | reference | ratio | note |",
           "|---|---|---:|---:|---:|---|"]
  for key, what, value, reference, ratio, note in rows:
    cells = [key, what, value, reference, f"{ratio:.2f}", note]
    lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
  return "\n".join(lines)


def header(started, sizes: plans.Sizes, quick: bool, results: dict) -> str:
  """When, on what machine and versions, at which sizes and XLA flags; each worker's cost."""
  jy = results["jax_ynn"]
  command = f"python -m benchmarks.run{' --quick' if quick else ''}"
  return "\n".join([
      f"`{command}` — {started:%Y-%m-%d %H:%M %Z}",
      f"machine: {cpu_model()}, {os.cpu_count()} CPUs; "
      f"JAX devices: {jy['devices']} x {jy['device_kind']}",
      "versions: " + _versions(jy["versions"]),
      f"sizes: {sizes.backbone} at {sizes.image_size}, train batch {sizes.train_batch}, "
      f"inference batch {sizes.infer_batch}; median of {sizes.timed} timed calls after "
      f"{sizes.warmup} warm-up; load average (1, 5, 15 min) at end {os.getloadavg()}",
      f"XLA_FLAGS: default = '{results['jax_default']['xla_flags']}', "
      f"ynn = '{jy['xla_flags']}'",
      "workers (wall s, 1-min load average before -> after): " + "; ".join(
          f"{k} {v['worker_wall_s']:.0f} s, {v['worker_load'][0]:.1f} -> "
          f"{v['worker_load'][1]:.1f}" for k, v in results.items()
          if isinstance(v, dict) and "worker_load" in v),
      "",
  ])


def gpu_header(started, r: dict) -> str:
  return (f"`python -m benchmarks.run --gpu` — {started:%Y-%m-%d %H:%M %Z}\n"
          f"devices: {r['devices']} x {r['device_kind']}; versions: "
          + _versions(r["versions"]) + "\n")


def write(path: pathlib.Path, head: str, table: str, results: dict) -> pathlib.Path:
  """The header and table as markdown at `path`; every raw figure as JSON beside it."""
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(head + "\n" + table + "\n")
  cli.write_json(path.with_suffix(".json"), results)
  return path.with_suffix(".json")


def cpu_model() -> str:
  try:
    text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"Model name:\s*(.+)", text)
    return match.group(1).strip() if match else platform.processor()
  except (OSError, subprocess.CalledProcessError):
    return platform.processor()


def _versions(versions: dict) -> str:
  return ", ".join(f"{k} {v}" for k, v in versions.items())


def _pair(value: float, reference: float, note: str = "", digits=2, unit: float = 1.0,
          ratio: float | None = None) -> tuple[str, str, float, str]:
  """(value, reference) as text in `unit` with `digits` decimals (one for both, or a pair),
  their ratio (value / reference unless given), and the note."""
  d_value, d_reference = digits if isinstance(digits, tuple) else (digits, digits)
  return (f"{value * unit:.{d_value}f}", f"{reference * unit:.{d_reference}f}",
          _ratio(value, reference) if ratio is None else ratio, note)


def _ratio(a, b) -> float:
  return a / b if b else float("nan")


def _target(ok: bool) -> str:
  return "PASS" if ok else "MISS"


def _trace_row(t: dict) -> tuple:
  """Convolution vs all op time of a one-core trace, with the rest of the op time."""
  return (f"{t['conv_ms']:.1f}", f"{t['total_ms']:.1f}", _ratio(t["conv_ms"], t["total_ms"]),
          f"matrix products (attention, MLPs, projections, label head) {t['dot_ms']:.1f} ms; "
          f"other {t['other_ms']:.1f} ms: " + ", ".join(
              f"{k} {v:.1f}" for k, v in t["other_split_ms"].items()))


def _coverage_row(t: dict) -> tuple:
  """On one core with synchronous ops, op time must account for the traced call's wall time."""
  coverage = _ratio(t["total_ms"], t["wall_ms"])
  return (f"{t['total_ms']:.1f}", f"{t['wall_ms']:.1f}", coverage,
          f"check 0.8-1.1: {_target(0.8 <= coverage <= 1.1)}")


def _rate_row(t: dict, peak: float) -> tuple:
  """Each class's FLOPs / time, against the matmul peak of the same core: at most 1."""
  conv = _ratio(t["conv_flops"], t["conv_ms"] / MILLI)
  dot = _ratio(t["dot_flops"], t["dot_ms"] / MILLI)
  worst = max(_ratio(conv, peak), _ratio(dot, peak))
  return (f"{conv * GIGA:.1f}", f"{peak * GIGA:.1f}", _ratio(conv, peak),
          f"matrix products {dot * GIGA:.1f} GFLOP/s; conv {t['conv_flops'] * GIGA:.1f} "
          f"GFLOP executed; check both <= 1.05 x peak: {_target(worst <= 1.05)}")


def _export_rows(e: dict) -> dict:
  """The export worker's serving paths against the Keras peer timed in the same rounds."""
  (model,) = e["models"].values()
  paths = {row["path"]: row for row in model["rows"]}
  rate = lambda name: paths[name]["images_per_s"]
  keras = rate("keras")
  diff = lambda name: f"max |dp| vs JAX {paths[name]['max_abs_diff']:.1e}"
  best = max((p for p in paths if p != "keras"), key=rate)
  ratio = _ratio(rate(best), keras)
  return {
      "infer_export_jax": _pair(rate("jax"), keras, "runtime.predict_fn, as evaluate and "
                                "predict run it; interleaved rounds, one process"),
      "infer_export_folded": _pair(rate("jax folded"), keras, diff("jax folded")),
      "infer_export_ort": _pair(rate("onnxruntime"), keras, diff("onnxruntime")),
      "infer_export_best": _pair(rate(best), keras,
                                 f"target >= 1.2: {_target(ratio >= 1.2)} ({best})"),
  }


def _top_row(t: dict) -> tuple:
  return (f"{t['top_ms']:.1f}", f"{t['total_ms']:.1f}", _ratio(t["top_ms"], t["total_ms"]),
          t["top_op"][:TOP_OP_CHARS])
