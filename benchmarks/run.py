"""Every speed figure of the project in one run and one table, measured side by side.

  python -m benchmarks.run [--quick] [--markdown_out=workdir/benchmarks/latest.md]
  python -m benchmarks.run --gpu [--train_batch=256] [--infer_batch=256]   (benchmarks/gpu.sh)

This machine is shared and noisy (15-25 percent between runs: docs/performance.md,
"## Measuring"), so everything that is compared is measured in the same run and read as a
ratio:
  1. the paper's model (InceptionV3 at 299 + MLT head, L = 12): the real training step and
     the jitted predict step (benchmarks/workers.py), next to an independent tf.keras peer of
     the same model (benchmarks/keras_peer.py), in float32 and in bfloat16;
  2. JAX with and without `--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`;
  3. FLOPs per image counted from the model's jaxpr and by XLA's cost_analysis, and the model
     FLOP utilisation against the fp32 and bf16 matmul peaks measured in the same run
     (benchmarks/flops.py);
  4. compile times; the train step split into input wait (blocked on the real tf.data
     iterator) and compute; the input pipeline alone; the on-device augmentation's cost; and
     where the time goes (backbone vs head; convolutions vs matrix products vs the rest, with
     their FLOP rates, traced on one core so that op time adds up to wall time:
     benchmarks/trace.py);
  5. inference of the exported model: JAX, JAX with BatchNorm folded, and the ONNX model on
     ONNX Runtime (benchmarks/export_speed.py), next to the Keras peer;
  6. the metric benchmark (benchmarks/metric_speed.py);
  7. targets, PASS / MISS (benchmarks/report.py).

XLA_FLAGS must be set before JAX initialises, so every JAX variant runs in its own
subprocess with its own environment (and so do the Keras peer, TensorFlow's input pipeline
and the metric benchmark); each writes a JSON dict that this parent process, which never
initialises JAX itself, joins into one table, one worker at a time (two cores: never two at
once). The sizes of each mode are benchmarks/plans.py; --quick takes about two minutes (the
test runs it) and its figures only show that the machinery works.
"""

import dataclasses
import datetime
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time

from absl import flags

import benchmarks
from benchmarks import cli
from benchmarks import flops
from benchmarks import plans
from benchmarks import report
from benchmarks import workers

DEFAULT_MARKDOWN = "workdir/benchmarks/latest.md"
# What this flag does to convolutions: docs/performance.md, "## XLA:CPU convolutions".
YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
# The honest profile's setting: Eigen convolutions run on the calling thread, so that each
# trace event lasts as long as its op (benchmarks/trace.py).
SYNC_EIGEN_FLAG = "--xla_cpu_multi_thread_eigen=false"
EXPORT_ROUNDS = 5  # interleaved rounds of the serving paths and the Keras peer
METRIC_TIMEOUT_S = 900  # metric_speed taking longer than this is broken, not slow


def _define_flags() -> None:
  flags.DEFINE_bool("quick", False, "Tiny sizes (benchmarks/plans.py QUICK): a ~2 minute "
                    "check that every row is measured.")
  flags.DEFINE_bool("gpu", False, "Accelerator mode (benchmarks/gpu.sh): the paper's model in "
                    "bf16, train and predict steps only, in this process.")
  flags.DEFINE_integer("train_batch", 0, "Overrides the mode's training batch (0: keep).")
  flags.DEFINE_integer("infer_batch", 0, "Overrides the mode's inference batch (0: keep).")
  flags.DEFINE_string("markdown_out", DEFAULT_MARKDOWN, "The table and its context, as "
                      "markdown (every raw figure in JSON beside it); relative to the "
                      "repository.")


def main() -> None:
  f = flags.FLAGS
  plan = "gpu" if f.gpu else "quick" if f.quick else "full"
  sizes = plans.get(plan, f.train_batch, f.infer_batch)
  started = datetime.datetime.now().astimezone()
  if f.gpu:
    results = workers.jax_worker(sizes, "bfloat16", "gpu")
    head = report.gpu_header(started, results)
    table = report.markdown_table(report.gpu_rows(results, sizes))
  else:
    print(f"benchmarks.run {'--quick ' if f.quick else ''}started "
          f"{started:%Y-%m-%d %H:%M %Z}; load average {os.getloadavg()}",
          file=sys.stderr, flush=True)
    results = _cpu_results(plan, sizes, f.train_batch, f.infer_batch)
    head = report.header(started, sizes, f.quick, results)
    table = report.markdown_table(report.build_rows(results, sizes))
  print(head)
  print(table)
  out = benchmarks.REPO / f.markdown_out  # an absolute --markdown_out stays as it is
  raw = report.write(out, head, table, results)
  print(f"\nwritten: {out} (and {raw.name})")


def _cpu_results(plan: str, sizes: plans.Sizes, train_batch: int, infer_batch: int) -> dict:
  """Runs every worker, one at a time, and returns their JSON dicts by name."""
  base_flags = os.environ.get("XLA_FLAGS", "").strip()
  ynn_flags = f"{base_flags} {YNN_FLAG}".strip()
  mode = [f"--plan={plan}", f"--train_batch={train_batch}", f"--infer_batch={infer_batch}"]
  jax_variant = ["benchmarks.workers", "--kind=jax", *mode]
  peer = ["benchmarks.keras_peer", f"--image_size={sizes.image_size}",
          f"--backbone={sizes.backbone}", f"--train_batch={sizes.train_batch}",
          f"--infer_batch={sizes.infer_batch}", f"--warmup={sizes.warmup}",
          f"--timed_steps={sizes.timed}", f"--matmul_size={sizes.matmul_size}",
          f"--matmul_repeats={sizes.matmul_repeats}"]
  # Serving paths and the Keras peer timed in interleaved rounds in one process: the one
  # comparison with Keras that the machine's drifting load cannot tilt.
  export = ["benchmarks.export_speed", f"--plan={plan}", f"--batch_size={sizes.infer_batch}",
            f"--warmup={sizes.warmup}", f"--repeats={max(sizes.timed, EXPORT_ROUNDS)}",
            "--keras"]
  metric = ["benchmarks.metric_speed", f"--frames={sizes.metric_frames}",
            f"--videos={sizes.metric_videos}", f"--repeats={sizes.metric_repeats}"]
  r = {"load_start": os.getloadavg()[0], "sizes": dataclasses.asdict(sizes)}
  r["numpy_peak"] = flops.numpy_matmul_peak(sizes.matmul_size, sizes.matmul_repeats)
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    r["jax_default"] = _run_worker("jax_default", jax_variant, tmp, base_flags)
    r["jax_ynn"] = _run_worker("jax_ynn", jax_variant + ["--profile=full"], tmp, ynn_flags)
    faster_ynn = r["jax_ynn"]["train_images_per_s"] >= r["jax_default"]["train_images_per_s"]
    r["chosen_flags"] = ynn_flags if faster_ynn else base_flags
    r["jax_bf16"] = _run_worker("jax_bf16", jax_variant + ["--dtype=bfloat16"], tmp,
                                r["chosen_flags"])
    r["jax_trace"] = _run_worker("jax_trace", jax_variant + ["--profile=trace", "--cpus=1"],
                                 tmp, f"{r['chosen_flags']} {SYNC_EIGEN_FLAG}".strip())
    r["export"] = _run_worker("export", export, tmp, r["chosen_flags"])
    r["keras_fp32"] = _run_worker("keras_fp32", peer + ["--policy=float32"], tmp)
    r["keras_bf16"] = _run_worker("keras_bf16", peer + ["--policy=mixed_bfloat16"], tmp)
    r["input"] = _run_worker("input", ["benchmarks.workers", "--kind=input", *mode], tmp)
    r["metric"] = _run_worker("metric", metric, tmp, timeout_s=METRIC_TIMEOUT_S)
  r["load_end"] = os.getloadavg()[0]
  return r


def _run_worker(name: str, args: list[str], tmp: pathlib.Path, xla_flags: str | None = None,
                timeout_s: float | None = None) -> dict:
  """Runs `python -m <args> --out=<json>` with its own XLA_FLAGS (None: this process's),
  killed after `timeout_s` (None: never); echoes its progress lines; returns the JSON dict
  it writes, with its wall time and the load average before and after."""
  env = dict(os.environ)
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  if xla_flags is not None:
    env["XLA_FLAGS"] = xla_flags
  out = tmp / f"{name}.json"
  cmd = [sys.executable, "-m", *args, f"--out={out}"]
  load_before = os.getloadavg()[0]
  start = time.perf_counter()
  log = []
  with subprocess.Popen(cmd, cwd=benchmarks.REPO, env=env, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True) as proc:
    deadline = threading.Timer(timeout_s or 0, proc.kill)
    if timeout_s:
      deadline.start()
    for line in proc.stdout:  # echo the worker's progress lines, keep the rest for errors
      log.append(line)
      if line.startswith(workers.PROGRESS_PREFIX):
        print(f"  {name}:{line.rstrip()}", file=sys.stderr, flush=True)
    returncode = proc.wait()
    deadline.cancel()
  seconds = time.perf_counter() - start
  if returncode != 0:
    raise RuntimeError(f"worker {name} failed ({returncode}) after {seconds:.0f} s "
                       f"(limit {timeout_s} s): {' '.join(cmd)}\n{''.join(log)[-6000:]}")
  print(f"  {name}: {seconds:.0f} s", file=sys.stderr, flush=True)
  result = json.loads(out.read_text())
  result["worker_wall_s"] = round(seconds, 1)
  result["worker_load"] = (round(load_before, 2), round(os.getloadavg()[0], 2))
  return result


if __name__ == "__main__":
  cli.run(_define_flags, main)
