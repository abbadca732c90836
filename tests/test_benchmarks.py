"""The benchmarks: FLOP counting, trace parsing, the report's targets, the CLIs, and
`python -m benchmarks.run --quick` end to end.

No timing is asserted anywhere: this machine is shared and noisy (docs/performance.md,
"## Measuring"), and the quick run's tiny sizes only show that the machinery works. What is
asserted: the counts are the textbook ones, the table has every row, each with a finite
numeric ratio, its figures are the workers' JSON figures, and the targets are stated as PASS
or MISS by the rule they name.
"""

import copy
import dataclasses
import datetime
import json
import math
import os
import subprocess
import sys

from absl import flags
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

import benchmarks
from benchmarks import flops
from benchmarks import metric_speed
from benchmarks import plans
from benchmarks import report
from benchmarks import run
from benchmarks import trace
from benchmarks import workers

QUICK_TIMEOUT_S = 1800  # generous: on a slow VM shared with the suite it took over 900 s
HELP_TIMEOUT_S = 120
# Every benchmark entry point and flags its --help must list.
SCRIPTS = {
    "run": ("quick", "gpu", "markdown_out", "train_batch", "infer_batch"),
    "workers": ("kind", "plan", "dtype", "profile", "out"),
    "keras_peer": ("policy", "backbone", "image_size", "timed_steps", "out"),
    "metric_speed": ("frames", "videos", "repeats", "window", "out"),
    "augment_speed": ("batch_size", "native_size", "sizes", "repeats"),
    "predict_speed": ("workdir", "video"),
    "export_speed": ("models", "batch_size", "repeats", "ort_threads", "out"),
    "face_speed": ("video", "detect_every", "paper_frames", "memory_frames"),
    "pool_speed": ("batch_size", "repeats", "cpus"),
    "ablations": ("config", "workdir", "steps", "only", "markdown_out"),
}


def conv_jaxpr(x_shape, w_shape, strides, padding):
  x = jnp.zeros(x_shape)
  w = jnp.zeros(w_shape)
  return jax.make_jaxpr(lambda x, w: lax.conv_general_dilated(
      x, w, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")))(x, w)


# ------------------------------------------------------------------------------ FLOPs


def test_conv_flops_with_padding_is_the_textbook_count():
  # 2 x (output pixels x output channels x input channels x kernel area).
  jaxpr = conv_jaxpr((2, 8, 8, 4), (3, 3, 4, 5), (1, 1), "SAME")
  assert flops.jaxpr_flops(jaxpr, count_padding=True) == 2 * 2 * 8 * 8 * 5 * 4 * 9


def test_conv_flops_skip_padding_taps():
  # 3x3 SAME on 8x8: per dimension, 8 outputs x 3 taps minus the 2 taps that hit the border.
  jaxpr = conv_jaxpr((1, 8, 8, 4), (3, 3, 4, 5), (1, 1), "SAME")
  assert flops.jaxpr_flops(jaxpr) == 2 * 5 * 4 * (8 * 3 - 2) ** 2


def test_dot_flops():
  jaxpr = jax.make_jaxpr(jnp.dot)(jnp.zeros((3, 7)), jnp.zeros((7, 11)))
  assert flops.jaxpr_flops(jaxpr) == 2 * 3 * 7 * 11


def test_flops_inside_a_jitted_call_and_a_scan_are_counted():
  def body(carry, _):
    return carry @ jnp.ones((7, 7)), None
  fn = jax.jit(lambda x: lax.scan(body, x, None, length=4)[0])
  assert flops.jaxpr_flops(jax.make_jaxpr(fn)(jnp.zeros((3, 7)))) == 4 * 2 * 3 * 7 * 7


def test_training_flops_of_a_strided_conv_are_three_forwards():
  # Gradients w.r.t. input and kernel each cost one forward's multiply-adds, once the zero
  # holes of the transposed (lhs-dilated) convolution are not counted.
  def loss(x, w):
    return jnp.sum(lax.conv_general_dilated(x, w, (2, 2), "VALID",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC")))
  x, w = jnp.zeros((2, 9, 9, 3)), jnp.zeros((3, 3, 3, 4))
  forward = flops.jaxpr_flops(jax.make_jaxpr(loss)(x, w))
  both = flops.jaxpr_flops(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(x, w))
  assert both == flops.TRAIN_FLOPS_FACTOR * forward


def test_xla_cost_analysis_agrees_with_the_jaxpr_count_on_a_dot():
  a, b = jnp.zeros((3, 7)), jnp.zeros((7, 11))
  compiled = jax.jit(jnp.dot).lower(a, b).compile()
  assert flops.xla_flops(compiled) == flops.jaxpr_flops(jax.make_jaxpr(jnp.dot)(a, b))


def test_mfu_is_model_flops_over_the_peak():
  assert flops.mfu(2e9, 50.0, 1e12) == pytest.approx(0.1)


# ------------------------------------------------------------------------------ trace


def compiled_conv_then_dot():
  x, w, m = jnp.ones((2, 16, 16, 8)), jnp.ones((3, 3, 8, 8)), jnp.ones((8, 64))

  def fn(x, w, m):
    y = lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.tanh(y.reshape(-1, 8) @ m)

  compiled = jax.jit(fn).lower(x, w, m).compile()
  return compiled, lambda: compiled(x, w, m).block_until_ready()


def test_hlo_ops_are_told_apart_by_what_they_compute():
  compiled, _ = compiled_conv_then_dot()
  lines, bodies = trace._hlo_index(compiled.as_text())  # pylint: disable=protected-access
  kinds = {trace._op_kind(line, bodies) for line in lines.values()}  # pylint: disable=protected-access
  assert {"conv", "dot"} <= kinds


def test_a_convolution_xla_rewrote_as_a_dot_is_still_a_convolution():
  x, w = jnp.ones((2, 16, 16, 8)), jnp.ones((1, 1, 8, 32))
  compiled = jax.jit(lambda x, w: lax.conv_general_dilated(
      x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))).lower(x, w).compile()
  lines, bodies = trace._hlo_index(compiled.as_text())  # pylint: disable=protected-access
  kinds = {trace._op_kind(line, bodies) for line in lines.values()}  # pylint: disable=protected-access
  assert "conv" in kinds and "dot" not in kinds


def test_the_other_ops_are_told_apart_by_their_source():
  def fn(x):
    with jax.named_scope("BatchNorm_0"):
      x = (x - x.mean(0)) * lax.rsqrt(x.var(0) + 1e-3)
    return jnp.cumsum(x, axis=1) * 2.0  # not a BatchNorm op, and outside the model

  compiled = jax.jit(fn).lower(jnp.ones((64, 32))).compile()
  lines, bodies = trace._hlo_index(compiled.as_text())  # pylint: disable=protected-access
  kinds = {trace._other_kind(line, bodies) for line in lines.values()  # pylint: disable=protected-access
           if trace._op_kind(line, bodies) == "other"}  # pylint: disable=protected-access
  assert "batchnorm" in kinds and kinds <= set(trace.OTHER_KINDS)


def test_a_max_pool_and_its_gradient_count_as_pooling_and_a_conv_bn_as_batchnorm():
  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  def loss(x):
    with jax.named_scope("MLT/backbone/Conv2d_1a/bn"):  # where ConvBN's statistics live
      x = (x - x.mean((0, 1, 2))) * lax.rsqrt(x.var((0, 1, 2)) + 1e-3)
    return jnp.sum(nn.max_pool(jax.nn.relu(x), (3, 3), strides=(2, 2)) ** 2)

  compiled = jax.jit(jax.grad(loss)).lower(jnp.ones((2, 15, 15, 8))).compile()
  lines, bodies = trace._hlo_index(compiled.as_text())  # pylint: disable=protected-access
  kinds = {trace._other_kind(line, bodies) for line in lines.values()  # pylint: disable=protected-access
           if trace._op_kind(line, bodies) == "other"}  # pylint: disable=protected-access
  assert {"batchnorm", "pooling"} <= kinds <= set(trace.OTHER_KINDS)


def test_the_flops_of_each_kind_are_counted_from_the_hlo_shapes():
  compiled, call = compiled_conv_then_dot()
  t = trace.trace_ops(call, compiled)
  # 3x3 conv, 8 -> 8 channels over 2x16x16: 2 FLOPs x outputs x (3 x 3 x 8) taps.
  assert t["conv_flops"] == 2 * (2 * 16 * 16 * 8) * (3 * 3 * 8)
  # (512 x 8) @ (8 x 64).
  assert t["dot_flops"] == 2 * (512 * 64) * 8
  assert t["wall_ms"] > 0


def test_trace_ops_sums_the_ops_of_one_call():
  compiled, call = compiled_conv_then_dot()
  t = trace.trace_ops(call, compiled)
  assert t["total_ms"] > 0
  assert t["conv_ms"] + t["dot_ms"] + t["other_ms"] == pytest.approx(t["total_ms"])
  assert 0 < t["top_ms"] <= t["total_ms"]
  assert t["top_op"].split(":")[0] in trace._hlo_index(compiled.as_text())[0]  # pylint: disable=protected-access


# ------------------------------------------------------------------------------ plans, metric


def test_plans_replace_only_the_batches_given():
  assert plans.get("quick") == plans.QUICK
  sizes = plans.get("full", train_batch=8)
  assert (sizes.train_batch, sizes.infer_batch) == (8, plans.FULL.infer_batch)
  assert sizes.image_size == plans.FULL.image_size
  assert plans.QUICK.backbone == "small_cnn" and plans.FULL.backbone == "inception_v3"


def test_metric_speed_returns_its_figures_as_a_dict():
  m = metric_speed.measure(frames=2000, videos=5, repeats=1)
  for key in ("f1_s", "sklearn_s", "smooth_s", "smooth_f1_s", "tune_s", "tune_sklearn_s"):
    assert math.isfinite(m[key]) and m[key] > 0, (key, m)
  assert m["tune_sklearn_s"] == pytest.approx(m["grid_size"] * m["sklearn_s"])
  assert m["grid_size"] == 199  # 0.005, ..., 0.995
  table = metric_speed.table(m)
  assert "2,000 frames" in table and f"{m['tune_s']:9.3f}" in table
  json.dumps(m)  # what --out writes


@pytest.mark.slow  # runs the benchmark's GPU path
def test_gpu_mode_reports_images_per_s_and_utilisation():
  # What `run.py --gpu` runs in its own process (no accelerator here: on the CPU, at tiny
  # sizes): the jax worker's 'gpu' profile, then the table from it.
  sizes = dataclasses.replace(plans.QUICK, train_batch=8, infer_batch=8, warmup=0, timed=1,
                              matmul_size=256, matmul_repeats=1)
  r = workers.jax_worker(sizes, "bfloat16", "gpu")
  assert r["flops_train"] > r["flops_forward"] > 0 and r["matmul_bf16_flops_per_s"] > 0
  rows = report.gpu_rows(r, sizes)
  assert [row[0] for row in rows] == ["gpu_train", "gpu_infer", "gpu_peak", "gpu_compile"]
  for key, _, _, _, ratio, _ in rows[:2]:  # the MFUs
    assert math.isfinite(ratio) and ratio > 0, key
  table = table_rows(report.markdown_table(rows))
  assert table["gpu_train"][2] == f"{r['train_images_per_s']:.0f}"
  assert "x cpu" in report.gpu_header(datetime.datetime.now(), r)


# ------------------------------------------------------------------------------ CLIs


def test_importing_the_benchmarks_defines_no_flags():
  # The flags are defined under `if __name__ == "__main__"`, so the modules import each other
  # (and into this test) freely. keras_peer is left out here: it loads TensorFlow.
  from benchmarks import augment_speed  # pylint: disable=g-import-not-at-top,unused-import
  from benchmarks import predict_speed  # pylint: disable=g-import-not-at-top,unused-import
  assert not [m for m in flags.FLAGS.flags_by_module_dict() if "benchmarks" in m]
  assert not {"quick", "markdown_out", "plan", "profile", "native_size"} & set(flags.FLAGS)


@pytest.mark.slow  # a subprocess each
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_lists_the_flags_of_each_script(script):
  proc = subprocess.run([sys.executable, "-m", f"benchmarks.{script}", "--help"],
                        cwd=benchmarks.REPO, capture_output=True, text=True,
                        timeout=HELP_TIMEOUT_S, check=False)
  # absl exits with 1 after printing the help.
  assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert f"python -m benchmarks.{script}" in proc.stdout  # the module's docstring
  for name in SCRIPTS[script]:
    assert f"--{name}" in proc.stdout or f"--[no]{name}" in proc.stdout, (name, proc.stdout)


@pytest.mark.slow  # a subprocess each
def test_a_script_refuses_stray_arguments():
  proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "quick"],
                        cwd=benchmarks.REPO, capture_output=True, text=True,
                        timeout=HELP_TIMEOUT_S, check=False)
  assert proc.returncode != 0 and "unexpected arguments" in proc.stderr


# ------------------------------------------------------------------------------ quick run


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
  """stdout of `python -m benchmarks.run --quick`, the markdown it wrote, the raw figures."""
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)  # the suite's 8 fake devices: the benchmark sets its own flags
  markdown = tmp_path_factory.mktemp("bench") / "quick.md"
  proc = subprocess.run(
      [sys.executable, "-m", "benchmarks.run", "--quick", f"--markdown_out={markdown}"],
      cwd=benchmarks.REPO, env=env, capture_output=True, text=True, timeout=QUICK_TIMEOUT_S,
      check=False)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  return proc.stdout, markdown, json.loads(markdown.with_suffix(".json").read_text())


def table_rows(text):
  """{key: [cells]} of the markdown table's body rows."""
  rows = {}
  for line in text.splitlines():
    if line.startswith("| ") and not line.startswith("| key "):
      cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
      rows[cells[0]] = cells
  return rows


@pytest.mark.slow  # the quick benchmark run, minutes
def test_quick_run_prints_every_row_with_a_numeric_ratio(quick_run):
  stdout, _, _ = quick_run
  rows = table_rows(stdout)
  assert list(rows) == [key for key, _ in report.ROWS]
  for key, what in report.ROWS:
    assert rows[key][1] == what.replace("|", "\\|")
    assert math.isfinite(float(rows[key][-2])), (key, rows[key])


@pytest.mark.slow  # the quick benchmark run, minutes
def test_quick_run_states_its_targets(quick_run):
  stdout, _, _ = quick_run
  rows = table_rows(stdout)
  for key in ("train_fp32_best", "infer_fp32_best", "input_vs_train", "metric_smooth_f1"):
    assert "PASS" in rows[key][-1] or "MISS" in rows[key][-1], rows[key]


@pytest.mark.slow  # the quick benchmark run, minutes
def test_quick_run_writes_the_same_table_as_markdown(quick_run):
  stdout, markdown, _ = quick_run
  assert table_rows(markdown.read_text()) == table_rows(stdout)
  assert markdown.read_text().startswith("`python -m benchmarks.run --quick`")


@pytest.mark.slow  # the quick benchmark run, minutes
def test_quick_run_measures_every_worker_at_the_quick_sizes(quick_run):
  _, _, results = quick_run
  assert results["sizes"] == dataclasses.asdict(plans.QUICK)
  for name in ("jax_default", "jax_ynn", "jax_bf16", "jax_trace", "export", "keras_fp32",
               "keras_bf16", "input", "metric"):
    assert results[name]["worker_wall_s"] > 0, name
  # The profile is traced on one core with synchronous Eigen, so that op time adds up.
  assert len(results["jax_trace"]["cpus"]) == 1
  assert run.SYNC_EIGEN_FLAG in results["jax_trace"]["xla_flags"]
  assert results["jax_trace"]["trace_train"]["conv_flops"] > 0
  paths = [row["path"] for row in results["export"]["models"]["quick"]["rows"]]
  assert paths == ["jax", "jax folded", "onnxruntime", "keras"]
  assert run.YNN_FLAG in results["jax_ynn"]["xla_flags"]
  assert run.YNN_FLAG not in results["jax_default"]["xla_flags"]
  assert results["jax_bf16"]["dtype"] == "bfloat16"
  assert results["keras_bf16"]["policy"] == "mixed_bfloat16"
  for name in ("jax_ynn", "keras_fp32"):
    assert results[name]["train_images_per_s"] > 0 and results[name]["infer_images_per_s"] > 0
  assert results["metric"]["frames"] == plans.QUICK.metric_frames
  assert results["jax_ynn"]["flops_train"] > results["jax_ynn"]["flops_forward"] > 0


@pytest.mark.slow  # the quick benchmark run, minutes
def test_the_table_shows_the_workers_figures(quick_run):
  stdout, _, r = quick_run
  rows = table_rows(stdout)
  assert rows["metric_f1"][2:4] == [f"{r['metric']['f1_s']:.3f}",
                                    f"{r['metric']['sklearn_s']:.3f}"]
  assert rows["train_fp32_ynn"][2:4] == [f"{r['jax_ynn']['train_images_per_s']:.2f}",
                                         f"{r['keras_fp32']['train_images_per_s']:.2f}"]
  assert rows["params"][2] == f"{r['jax_ynn']['params']:,}"


@pytest.mark.slow  # the quick benchmark run, minutes
def test_same_model_in_both_frameworks(quick_run):
  # Flax params + BN statistics equal the Keras peer's weights (the same architecture).
  rows = table_rows(quick_run[0])
  assert float(rows["params"][-2]) == pytest.approx(1.0, abs=0.01)


@pytest.mark.slow  # the quick benchmark run, minutes
def test_targets_hold_jax_to_its_faster_flag_setting(quick_run):
  _, _, measured = quick_run
  sizes = plans.QUICK
  r = copy.deepcopy(measured)
  keras = r["keras_fp32"]["train_images_per_s"]
  r["jax_default"]["train_images_per_s"] = 0.5 * keras
  r["jax_ynn"]["train_images_per_s"] = 2.0 * keras
  rows = {row[0]: row for row in report.build_rows(r, sizes)}
  assert rows["train_fp32_best"][4] == pytest.approx(2.0)
  assert "PASS" in rows["train_fp32_best"][5] and "(ynn flag)" in rows["train_fp32_best"][5]
  assert rows["mfu_train"][4] == pytest.approx(2.0)

  r["jax_ynn"]["train_images_per_s"] = 0.25 * keras
  rows = {row[0]: row for row in report.build_rows(r, sizes)}
  assert rows["train_fp32_best"][4] == pytest.approx(0.5)
  assert "MISS" in rows["train_fp32_best"][5]
  assert "(default flags)" in rows["train_fp32_best"][5]

  r["metric"]["smooth_f1_s"] = 2.0
  rows = {row[0]: row for row in report.build_rows(r, sizes)}
  assert "MISS" in rows["metric_smooth_f1"][5]
  assert np.isfinite([row[4] for row in rows.values()]).all()
