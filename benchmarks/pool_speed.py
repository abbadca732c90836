"""Max pooling in training: XLA's select-and-scatter gradient beside models/pooling.max_pool.

  python -m benchmarks.pool_speed [--batch_size=16] [--warmup=1] [--repeats=5] [--cpus=1]
                                  [--train_step]

Each max pool of the InceptionV3 trunk at 299 (MaxPool_3a, MaxPool_5a, Mixed_6a, Mixed_7a,
Mixed_7c's pool branch), at the training batch: the forward pass and the gradient
(`jax.vjp`, forward included) of `flax.linen.max_pool` (lax.reduce_window, whose gradient
XLA:CPU expands into iota + reduce-window over (value, index) + scatter) and of
`mlt_flax.models.pooling.max_pool` (strided slices, a mask-and-pad gradient), each jitted,
timed in the same run; the ratio is XLA's time over ours. On --cpus cores (default one, with
Eigen synchronous, as benchmarks/trace.py profiles), set before JAX starts.

--train_step also times the whole training step of the paper's model (benchmarks.run's full
plan: configs/abaw3.py, InceptionV3 at 299, batch --batch_size) twice, compiled once with
these pools and once with XLA's, in interleaved rounds (benchmarks/timing.py): the fix
measured where it matters.
"""

import os

from absl import flags

from benchmarks import cli

# name, input (H = W, C) at batch B, window, stride, padding
POOLS = (("MaxPool_3a", 147, 64, 3, 2, "VALID"), ("MaxPool_5a", 71, 192, 3, 2, "VALID"),
         ("Mixed_6a", 35, 288, 3, 2, "VALID"), ("Mixed_7a", 17, 768, 3, 2, "VALID"),
         ("Mixed_7c", 8, 2048, 3, 1, "SAME"))
SYNC_EIGEN_FLAG = "--xla_cpu_multi_thread_eigen=false"


def _define_flags() -> None:
  flags.DEFINE_integer("batch_size", 16, "The training batch (benchmarks.run's).")
  flags.DEFINE_integer("warmup", 1, "Untimed calls after compilation.")
  flags.DEFINE_integer("repeats", 5, "Timed calls; the median is reported.")
  flags.DEFINE_integer("cpus", 1, "Cores to run on (1: Eigen synchronous too).")
  flags.DEFINE_bool("train_step", False, "Also time the paper's whole train step with both "
                    "pools, side by side.")


def main() -> None:
  f = flags.FLAGS
  os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:f.cpus])
  if f.cpus == 1:
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SYNC_EIGEN_FLAG}".strip()
  from mlt_flax import xla_cpu  # pylint: disable=g-import-not-at-top
  xla_cpu.apply_defaults()  # the entry points' XLA:CPU flags, before JAX starts
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from benchmarks import timing  # pylint: disable=g-import-not-at-top
  from mlt_flax.models import pooling  # pylint: disable=g-import-not-at-top

  print(f"jax {jax.__version__}, {f.cpus} core(s), XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; "
        f"batch {f.batch_size}; median of {f.repeats} after {f.warmup} warm-up call(s)")
  print(f"{'pool':12s}{'input':>16s}{'XLA fwd':>9s}{'ours':>7s}{'XLA grad':>10s}{'ours':>7s}"
        f"{'grad ratio':>11s}   (ms; grad = forward + backward)")
  totals = np.zeros(4)
  rng = np.random.default_rng(0)
  for name, size, channels, window, stride, padding in POOLS:
    x = jax.nn.relu(rng.normal(size=(f.batch_size, size, size, channels)).astype(np.float32))
    fns = {"xla": lambda v: nn.max_pool(v, (window, window), strides=(stride, stride),
                                        padding=padding),
           "ours": lambda v: pooling.max_pool(v, window, stride, padding)}
    row = []
    for fn in fns.values():
      y, _ = jax.vjp(fn, x)
      g = rng.normal(size=y.shape).astype(np.float32)
      forward = jax.jit(fn)
      grad = jax.jit(lambda v, g, fn=fn: jax.vjp(fn, v)[1](g)[0])
      row.append(timing.median_times(lambda: forward(x).block_until_ready(), f.warmup,
                                     f.repeats)[1])
      row.append(timing.median_times(lambda: grad(x, g).block_until_ready(), f.warmup,
                                     f.repeats)[1])
    xla_fwd, xla_grad, our_fwd, our_grad = (1e3 * t for t in row)
    totals += (xla_fwd, our_fwd, xla_grad, our_grad)
    print(f"{name:12s}{f'{size}x{size}x{channels}':>16s}{xla_fwd:9.1f}{our_fwd:7.1f}"
          f"{xla_grad:10.1f}{our_grad:7.1f}{xla_grad / our_grad:11.2f}")
  print(f"{'all five':28s}{totals[0]:9.1f}{totals[1]:7.1f}{totals[2]:10.1f}{totals[3]:7.1f}"
        f"{totals[2] / totals[3]:11.2f}")
  if f.train_step:
    _train_steps(f.batch_size, f.warmup, f.repeats)


def _train_steps(batch_size: int, warmup: int, rounds: int) -> None:
  """The paper's train step with models/pooling.max_pool and with XLA's, interleaved."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from benchmarks import plans  # pylint: disable=g-import-not-at-top
  from benchmarks import timing  # pylint: disable=g-import-not-at-top
  from benchmarks import workers  # pylint: disable=g-import-not-at-top
  from mlt_flax.models import pooling  # pylint: disable=g-import-not-at-top

  def xla_pool(x, window, stride, padding="VALID"):
    return nn.max_pool(x, (window, window), strides=(stride, stride), padding=padding)

  config = workers.bench_config(plans.get("full", batch_size, 0), "float32")
  rng = np.random.default_rng(0)
  steps = {}
  ours = pooling.max_pool
  for name, pool in (("ours", ours), ("xla", xla_pool)):
    pooling.max_pool = pool  # what the model calls while this variant is traced
    try:
      s = workers._steps(config, 12)  # pylint: disable=protected-access
      batch = s.dp.to_global({
          "image": rng.integers(0, 256, (batch_size, 112, 112, 3), np.uint8),
          "labels": rng.integers(0, 2, (batch_size, 12)).astype(np.float32)})
      compiled = s.train.lower(s.state, batch).compile()
    finally:
      pooling.max_pool = ours
    steps[name] = [compiled, s.state, batch]

  def run(name):
    def call():
      compiled, state, batch = steps[name]
      state, _, finite = compiled(state, batch)
      bool(finite)
      steps[name][1] = state
    return call

  times = timing.interleaved_medians({n: run(n) for n in steps}, warmup, rounds)
  ours_s, xla_s = times["ours"][1], times["xla"][1]
  print(f"\ntrain step, paper's model at batch {batch_size} (interleaved rounds): "
        f"XLA's pools {xla_s * 1e3:.0f} ms, ours {ours_s * 1e3:.0f} ms: {xla_s / ours_s:.2f}x "
        f"({batch_size / xla_s:.2f} -> {batch_size / ours_s:.2f} img/s)")


if __name__ == "__main__":
  cli.run(_define_flags, main)
