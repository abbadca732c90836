"""XLA:CPU defaults, measured on this project's models; applied before JAX starts a backend.

`--xla_cpu_experimental_ynn_fusion_type=-individual_convolution` sends convolutions to Eigen
instead of YNNPACK. On the 2-core Zen4 machines this project is developed on (jaxlib 0.10),
it made the paper's model (InceptionV3 at 299) 1.6x faster to train and 1.7x faster in
inference, and the demo's small CNN 1.2x faster to train, with outputs equal to ~1e-6
(BENCHMARKS.md has the side-by-side runs). XLA reads XLA_FLAGS once, when the first backend
starts, so the entry points call `apply_defaults()` first thing. The flag only concerns the
CPU backend; GPU and TPU ignore it.

Opt out with MLT_XLA_CPU_DEFAULTS=0; a user's own `xla_cpu_experimental_ynn_fusion_type` in
XLA_FLAGS is left as it is.
"""

import os

CONVOLUTION_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
OPT_OUT_ENV = "MLT_XLA_CPU_DEFAULTS"


def apply_defaults(environ=os.environ) -> str | None:
  """Adds the project's XLA:CPU flag to XLA_FLAGS; returns what it added (None: nothing)."""
  if environ.get(OPT_OUT_ENV, "1") == "0":
    return None
  current = environ.get("XLA_FLAGS", "")
  if CONVOLUTION_FLAG.split("=", 1)[0] in current:
    return None
  environ["XLA_FLAGS"] = f"{current} {CONVOLUTION_FLAG}".strip()
  return CONVOLUTION_FLAG
