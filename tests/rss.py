"""Peak resident memory of one phase of a fresh process, as the Linux kernel counts it.

`measure(script, *args)` runs `script` in a new Python process (this folder importable, so
the script can `import rss`) and returns the JSON the script prints last. Inside, the script
calls `rss.reset_peak()` before a phase and reads `rss.peak_mb()` after it: start-up peaks
(imports, restoring, compiling) do not mask the phase being measured.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent


def reset_peak() -> None:
  """Resets this process's peak RSS (VmHWM) to its current RSS (clear_refs, Linux >= 4.0)."""
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")


def peak_mb() -> float:
  """This process's peak RSS since start or the last reset_peak(), in MB."""
  status = pathlib.Path("/proc/self/status").read_text()
  return int(re.search(r"VmHWM:\s+(\d+) kB", status)[1]) / 1024


def measure(script: str, *args, timeout: int = 600):
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]))
  result = subprocess.run([sys.executable, "-c", script, *map(str, args)], cwd=HERE.parent,
                          env=env, capture_output=True, text=True, timeout=timeout)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.splitlines()[-1])
