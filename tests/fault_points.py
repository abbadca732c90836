"""Runs the real entry point, paused at a chosen moment, so that a test can kill it there.

  python tests/fault_points.py POINT N -- <mlt_flax.main flags>

POINT is where the N-th occurrence (1-based, counted in this process) holds the process:
  save  inside the N-th asynchronous checkpoint save, after all its files are written to
        Orbax's temporary folder and before the rename that commits the step;
  eval  inside the N-th evaluation, after its first batch.
There the runner prints `FAULT_POINT <point> <n> <detail>` and sleeps until it is killed.
Nothing else changes: everything before the pause is the real training run. The restart
after the kill uses the plain `python -m mlt_flax.main` command.

Tests use `program(point, n)` in place of `-m mlt_flax.main`, then `wait_until_held(proc, ...)`.
"""

import asyncio
import collections
import pathlib
import sys
import time

from orbax.checkpoint._src.path import atomicity

from mlt_flax import input_pipeline

HOLD_S = 600  # far longer than any test waits for the kill
_counts = collections.Counter()


def program(point: str, n: int) -> list[str]:
  """The arguments that replace `-m mlt_flax.main` to hold that run at the n-th `point`."""
  return [str(pathlib.Path(__file__).resolve()), point, str(n), "--"]


def wait_until_held(proc, point: str, n: int, what: str = "the run") -> str:
  """Reads `proc`'s stdout (text) until it holds at the n-th `point`; returns what it printed.

  Raises AssertionError if the process ends first.
  """
  printed = []
  for line in proc.stdout:
    printed.append(line)
    if line.startswith(f"FAULT_POINT {point} {n}"):
      return "".join(printed)
  proc.wait()
  raise AssertionError(f"{what} ended (rc {proc.returncode}) before {point} #{n}:\n"
                       + "".join(printed)[-2000:])


def _reached(point: str, target: int, detail: str) -> bool:
  _counts[point] += 1
  if _counts[point] != target:
    return False
  print(f"FAULT_POINT {point} {target} {detail}", flush=True)
  return True


def hold_in_save(target: int) -> None:
  commit = atomicity.AtomicRenameTemporaryPath.finalize

  async def finalize(self, *args, **kwargs):
    final = self._final_path  # pylint: disable=protected-access
    # Orbax commits each item (<step>.tmp/state.tmp -> state), then the step folder itself.
    if final.name.isdigit() and _reached("save", target, f"{self.get()} -> {final}"):
      await asyncio.sleep(HOLD_S)
    return await commit(self, *args, **kwargs)

  atomicity.AtomicRenameTemporaryPath.finalize = finalize


def hold_in_eval(target: int) -> None:
  batches = input_pipeline.eval_batches

  def eval_batches(*args, **kwargs):
    for i, batch in enumerate(batches(*args, **kwargs)):
      yield batch
      if i == 0 and _reached("eval", target, "after the first batch"):
        time.sleep(HOLD_S)

  input_pipeline.eval_batches = eval_batches


if __name__ == "__main__":
  point, target, separator, *main_argv = sys.argv[1:]
  if separator != "--" or point not in ("save", "eval"):
    sys.exit(__doc__)
  {"save": hold_in_save, "eval": hold_in_eval}[point](int(target))
  sys.argv = [sys.argv[0], *main_argv]  # ml_collections reads --config.* overrides from here
  from mlt_flax import main as entry  # pylint: disable=g-import-not-at-top
  entry.run()
