"""The timing rules of every benchmark: first call apart, then the median after warm-up; for
paths compared with each other, the same in interleaved rounds; for peaks, the best of several
calls after one warm-up; for a stream, items over one pass."""

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


def interleaved_medians(fns: dict, warmup: int, rounds: int) -> dict:
  """{name: (seconds of its first call, median seconds over `rounds`)} of several callables
  timed side by side: after the first calls and `warmup` untimed rounds, each round calls
  every fn once, in an order rotated every round. On a shared machine the load drifts over
  all of them alike, so their ratios hold where separately timed figures do not."""
  names = list(fns)
  first = {}
  for name in names:
    start = time.perf_counter()
    fns[name]()
    first[name] = time.perf_counter() - start
  for _ in range(warmup):
    for name in names:
      fns[name]()
  times = {name: [] for name in names}
  for r in range(rounds):
    for name in names[r % len(names):] + names[:r % len(names)]:
      start = time.perf_counter()
      fns[name]()
      times[name].append(time.perf_counter() - start)
  return {name: (first[name], statistics.median(times[name])) for name in names}


def matmul_peak(matmul, size: int, repeats: int) -> float:
  """Best FLOP/s of `matmul()`, an (size x size) @ (size x size) product that blocks."""
  matmul()  # compile or trace, and warm up
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    matmul()
    best = min(best, time.perf_counter() - start)
  return 2 * size**3 / best


def per_second(fn) -> tuple[int, float]:
  """(n, n per second) of one call of `fn()`, which processes and returns n items."""
  start = time.perf_counter()
  n = fn()
  return n, n / (time.perf_counter() - start)


def per_second_and_cpu_second(fn) -> tuple[int, float, float]:
  """(n, n per second, n per CPU second of this process) of one call of `fn()`, which
  processes and returns n items. On a shared machine the CPU figure is near what a core of
  its own would give, where the wall-clock one says as much about the neighbours."""
  cpu = time.process_time()
  n, rate = per_second(fn)
  return n, rate, n / (time.process_time() - cpu)
