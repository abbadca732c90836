"""Time to the first frame of `predict`: ONNX Runtime (--model) beside JAX (--workdir).

  python -m benchmarks.serving_start --workdir=workdir/demo --model=exported/demo
                                     [--photo=single_face.jpg] [--repeats=3]

Each path is the real command line in a fresh interpreter, on one photo (one frame: a face
found, aligned, predicted, its CSV written), so the wall time is what a user waits for the
first result: imports, model load (a checkpoint restore and a JAX compile, or an ONNX
Runtime session), face finding. The runs alternate between the paths (benchmarks/timing.py's
interleaving, by hand: each is a process); the median of --repeats is printed, with the
import time `python -X importtime` reports and whether jax or tensorflow was imported.
"""

import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from absl import flags

from benchmarks import cli
from mlt_flax import assets

HEAVY = ("jax", "tensorflow")  # top-level packages the --model path must not import


def _define_flags() -> None:
  flags.DEFINE_string("workdir", "workdir/demo", "A trained run (predict --workdir).")
  flags.DEFINE_string("model", None, "Its export (predict --model).", required=True)
  flags.DEFINE_string("photo", "single_face.jpg", "A photo of mlt_flax.assets.")
  flags.DEFINE_integer("repeats", 3, "Runs of each path; the median is reported.")


def one_run(source_flag: str, photo: pathlib.Path) -> dict:
  """Wall seconds of one predict command, its import time and the heavy packages it loaded."""
  with tempfile.TemporaryDirectory() as out:
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "mlt_flax.predict",
                        source_flag, f"--input={photo}", f"--output={out}"],
                       capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
  if r.returncode:
    raise SystemExit(f"predict {source_flag} failed: {r.stderr.strip().splitlines()[-1:]}")
  imports = [line.split("|") for line in r.stderr.splitlines()
             if line.startswith("import time:") and line.count("|") == 2]
  # Nested imports are indented past the one space after '|': count the outermost only.
  top = [(int(cumulative), name.strip()) for _, cumulative, name in imports[1:]
         if not name.startswith("  ") and cumulative.strip().isdigit()]
  loaded = {name.strip().split(".")[0] for _, _, name in imports[1:]}
  return {"wall_s": wall, "import_s": sum(us for us, _ in top) / 1e6,
          "heavy": sorted(loaded & set(HEAVY))}


def main() -> None:
  f = flags.FLAGS
  photo = assets.path(f.photo)
  paths = {"onnxruntime (--model)": f"--model={f.model}",
           "jax (--workdir)": f"--workdir={f.workdir}"}
  runs = {name: [] for name in paths}
  print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; one photo "
        f"({f.photo}), {f.repeats} runs of each path, alternating")
  for _ in range(f.repeats):
    for name, flag in paths.items():
      runs[name].append(one_run(flag, photo))
  print(f"{'path':>22} {'first frame s':>14} {'imports s':>10}  heavy packages imported")
  for name, rs in runs.items():
    print(f"{name:>22} {statistics.median(r['wall_s'] for r in rs):14.1f} "
          f"{statistics.median(r['import_s'] for r in rs):10.2f}  "
          f"{', '.join(rs[0]['heavy']) or 'none'}")
  print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  cli.run(_define_flags, main)
