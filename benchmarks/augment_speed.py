"""Frames/s of the on-device augmentation next to plain preprocessing, in one run.

  python -m benchmarks.augment_speed [--batch_size=64] [--native_size=112] [--sizes=112,299]
      [--warmup=2] [--repeats=10]

For each output size: `preprocess` (resize + scale) and `augment` with the paper's config
(configs/abaw3.py, mixup allowed), each jitted, fed uint8 frames at native size as the host
would ship them, with a new random key every call. Figures are medians of --repeats timed
calls after --warmup calls (benchmarks/timing.py); runs on a shared machine vary by 15-25
percent (docs/performance.md, "## Measuring"), so read the augment / preprocess ratio.
"""

import functools
import itertools

from absl import flags
import jax
import numpy as np

from benchmarks import cli
from benchmarks import timing
from configs import abaw3
from mlt_flax import augment as aug


def _define_flags() -> None:
  flags.DEFINE_integer("batch_size", 64, "Frames per call (the paper's batch).")
  flags.DEFINE_integer("native_size", 112, "Height = width of the uint8 input frames.")
  flags.DEFINE_list("sizes", ["112", "299"], "Output sizes to time.")
  flags.DEFINE_integer("num_labels", 12, "AUs per frame (ABAW3).")
  flags.DEFINE_integer("warmup", 2, "Untimed calls after compilation.")
  flags.DEFINE_integer("repeats", 10, "Timed calls; the median is reported.")


def measure(fn, frames, labels, warmup: int, repeats: int) -> tuple[float, float]:
  """(compile s, median s per call) of fn(key, frames, labels), a new key every call."""
  keys = itertools.count()
  return timing.median_times(
      lambda: jax.block_until_ready(fn(jax.random.key(next(keys)), frames, labels)),
      warmup, repeats)


def main() -> None:
  f = flags.FLAGS
  cfg = abaw3.get_config().augment
  rng = np.random.default_rng(0)
  b, n = f.batch_size, f.native_size
  frames = jax.device_put(rng.integers(0, 256, (b, n, n, 3), np.uint8))
  labels = jax.device_put(rng.integers(0, 2, (b, f.num_labels)).astype(np.float32))
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; batch {b} of {n}x{n} uint8; "
        f"median of {f.repeats} after {f.warmup} warm-up calls")
  print(f"{'output':>8} {'step':>10} {'compile s':>10} {'ms/batch':>9} {'frames/s':>9} "
        f"{'ratio':>6}")
  for size in map(int, f.sizes):
    preprocess = jax.jit(lambda key, x, y, size=size: aug.preprocess(x, size))
    augment = jax.jit(functools.partial(aug.augment, cfg=cfg, size=size, allow_mixup=True))
    base = None
    for name, fn in (("preprocess", preprocess), ("augment", augment)):
      compile_s, seconds = measure(fn, frames, labels, f.warmup, f.repeats)
      base = base or seconds
      print(f"{size:>4}x{size:<3} {name:>10} {compile_s:>10.2f} {seconds * 1e3:>9.2f} "
            f"{b / seconds:>9.0f} {seconds / base:>6.2f}")


if __name__ == "__main__":
  cli.run(_define_flags, main)
