"""The entry points' XLA:CPU default: convolutions go to Eigen, not YNNPACK, unless opted out."""

import os
import subprocess
import sys

import pytest

from mlt_flax import xla_cpu

# Compiles one convolution in a fresh process (XLA reads XLA_FLAGS once per process) after
# apply_defaults(), and prints whether XLA:CPU handed it to YNNPACK (a `ynn_fusion`).
_PROBE = """
from mlt_flax import xla_cpu
xla_cpu.apply_defaults()
import jax, jax.numpy as jnp
conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
x, w = jnp.ones((8, 32, 32, 64)), jnp.ones((3, 3, 64, 64))  # large enough for YNNPACK
print("ynn" if "ynn_fusion" in jax.jit(conv).lower(x, w).compile().as_text() else "eigen")
"""


def _probe(**env):
  environ = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", xla_cpu.OPT_OUT_ENV)}
  result = subprocess.run([sys.executable, "-c", _PROBE], env={**environ, **env},
                          capture_output=True, text=True, timeout=120, check=True)
  return result.stdout.split()[-1]


def test_adds_the_flag_to_existing_xla_flags():
  environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  assert xla_cpu.apply_defaults(environ) == xla_cpu.CONVOLUTION_FLAG
  assert environ["XLA_FLAGS"] == ("--xla_force_host_platform_device_count=8 "
                                  + xla_cpu.CONVOLUTION_FLAG)


def test_a_users_own_setting_wins():
  environ = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=default"}
  assert xla_cpu.apply_defaults(environ) is None
  assert environ["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type=default"


def test_opt_out_leaves_xla_flags_alone():
  environ = {xla_cpu.OPT_OUT_ENV: "0"}
  assert xla_cpu.apply_defaults(environ) is None
  assert "XLA_FLAGS" not in environ


@pytest.mark.slow  # compiles in fresh processes
def test_the_flag_takes_effect_in_a_fresh_process():
  assert _probe() == "eigen"
  assert _probe(**{xla_cpu.OPT_OUT_ENV: "0"}) == "ynn"
