"""The one timing rule of every benchmark: first call apart, then the median after warm-up."""

import statistics
import time


def median_times(fn, warmup: int, timed: int) -> tuple[float, float]:
  """(seconds of the first call, median seconds of `timed` calls after `warmup` more)."""
  start = time.perf_counter()
  fn()
  first = time.perf_counter() - start
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(timed):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return first, statistics.median(times)
