"""The benchmark: its FLOP counting, and `python -m benchmarks.run --quick` end to end.

No timing is asserted anywhere: this machine is shared and noisy (+-15-25%), and the quick
run's tiny sizes only show that the machinery works. What is asserted: the table has every
row, each with a finite numeric ratio, and the targets are stated as PASS or MISS.
"""

import math
import os
import subprocess
import sys

import jax
from jax import lax
import jax.numpy as jnp
import pytest

from benchmarks import run

QUICK_TIMEOUT_S = 900  # generous: the suite may share the two cores with this run


def conv_jaxpr(x_shape, w_shape, strides, padding):
  x = jnp.zeros(x_shape)
  w = jnp.zeros(w_shape)
  return jax.make_jaxpr(lambda x, w: lax.conv_general_dilated(
      x, w, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")))(x, w)


def test_conv_flops_with_padding_is_the_textbook_count():
  # 2 x (output pixels x output channels x input channels x kernel area).
  jaxpr = conv_jaxpr((2, 8, 8, 4), (3, 3, 4, 5), (1, 1), "SAME")
  assert run.jaxpr_flops(jaxpr, count_padding=True) == 2 * 2 * 8 * 8 * 5 * 4 * 9


def test_conv_flops_skip_padding_taps():
  # 3x3 SAME on 8x8: per dimension, 8 outputs x 3 taps minus the 2 taps that hit the border.
  jaxpr = conv_jaxpr((1, 8, 8, 4), (3, 3, 4, 5), (1, 1), "SAME")
  assert run.jaxpr_flops(jaxpr) == 2 * 5 * 4 * (8 * 3 - 2) ** 2


def test_dot_flops():
  jaxpr = jax.make_jaxpr(jnp.dot)(jnp.zeros((3, 7)), jnp.zeros((7, 11)))
  assert run.jaxpr_flops(jaxpr) == 2 * 3 * 7 * 11


def test_training_flops_of_a_strided_conv_are_three_forwards():
  # Gradients w.r.t. input and kernel each cost one forward's multiply-adds, once the zero
  # holes of the transposed (lhs-dilated) convolution are not counted.
  def loss(x, w):
    return jnp.sum(lax.conv_general_dilated(x, w, (2, 2), "VALID",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC")))
  x, w = jnp.zeros((2, 9, 9, 3)), jnp.zeros((3, 3, 3, 4))
  forward = run.jaxpr_flops(jax.make_jaxpr(loss)(x, w))
  both = run.jaxpr_flops(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(x, w))
  assert both == 3 * forward


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
  """stdout of `python -m benchmarks.run --quick`, and the markdown file it wrote."""
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)  # the suite's 8 fake devices: the benchmark sets its own flags
  markdown = tmp_path_factory.mktemp("bench") / "quick.md"
  proc = subprocess.run(
      [sys.executable, "-m", "benchmarks.run", "--quick", f"--markdown_out={markdown}"],
      cwd=run.REPO, env=env, capture_output=True, text=True, timeout=QUICK_TIMEOUT_S,
      check=False)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  return proc.stdout, markdown


def table_rows(text):
  """{key: [cells]} of the markdown table's body rows."""
  rows = {}
  for line in text.splitlines():
    if line.startswith("| ") and not line.startswith("| key "):
      cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
      rows[cells[0]] = cells
  return rows


def test_quick_run_prints_every_row_with_a_numeric_ratio(quick_run):
  stdout, _ = quick_run
  rows = table_rows(stdout)
  missing = [key for key, _ in run.ROWS if key not in rows]
  assert not missing
  for key, _ in run.ROWS:
    ratio = float(rows[key][-2])
    assert math.isfinite(ratio), (key, rows[key])


def test_quick_run_states_its_targets(quick_run):
  stdout, _ = quick_run
  rows = table_rows(stdout)
  for key in ("train_fp32_best", "infer_fp32_best", "input_vs_train", "metric_smooth_f1"):
    assert "PASS" in rows[key][-1] or "MISS" in rows[key][-1], rows[key]


def test_quick_run_writes_the_same_table_as_markdown(quick_run):
  stdout, markdown = quick_run
  assert table_rows(markdown.read_text()).keys() == table_rows(stdout).keys()
  assert markdown.with_suffix(".json").exists()


def test_same_model_in_both_frameworks(quick_run):
  # Flax params + BN statistics equal the Keras peer's weights (the same architecture).
  rows = table_rows(quick_run[0])
  assert float(rows["params"][-2]) == pytest.approx(1.0, abs=0.01)
