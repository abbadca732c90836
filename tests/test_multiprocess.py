"""Several hosts, proven on one machine: jax.distributed over loopback with CPU collectives.

Two processes, each with 2 fake CPU devices (4 in all), run the real entry point as a user
would on two hosts: they end holding identical parameters, the same as one process with 4
devices, and a 2-process run killed mid-run resumes (same command) to the same end.
"""

import os
import pathlib
import re
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import complete_steps
import fault_points

SLOW = pytest.mark.slow  # several processes over jax.distributed

ROOT = pathlib.Path(__file__).resolve().parents[1]
NUM_STEPS = 8
EVERY = 2  # evaluate and checkpoint every 2 steps
DIGEST = re.compile(r"process (\d): final parameter digest (\w+)")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start(workdir, data_dir, num_processes, devices_per_process, hold=None, name="run"):
  """Starts the processes of one run; hold=(point, n) holds each there (fault_points.py).

  Process i's stderr goes to <workdir>/<name>_<i>.err.
  """
  port = free_port()
  env = dict(os.environ, MLT_CPU_COLLECTIVES="gloo", JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}")
  program = ["-m", "mlt_flax.main"] if hold is None else fault_points.program(*hold)
  pathlib.Path(workdir).mkdir(parents=True, exist_ok=True)
  procs = []
  for i in range(num_processes):
    stderr = open(pathlib.Path(workdir) / f"{name}_{i}.err", "w")
    procs.append(subprocess.Popen(
        [sys.executable, *program, "--config=configs/tiny.py", f"--workdir={workdir}",
         f"--config.data.data_dir={data_dir}", "--config.train.batch_size=16",
         f"--config.train.num_steps={NUM_STEPS}", f"--config.train.eval_every_steps={EVERY}",
         f"--config.train.checkpoint_every_steps={EVERY}",
         f"--config.train.log_every_steps={EVERY}",
         f"--num_processes={num_processes}", f"--process_id={i}",
         f"--coordinator_address=127.0.0.1:{port}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True))
    stderr.close()
  return procs


def run(workdir, data_dir, num_processes, devices_per_process, name="run"):
  procs = start(workdir, data_dir, num_processes, devices_per_process, name=name)
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for i, p in enumerate(procs):
    assert p.returncode == 0, f"process {i}: see {workdir}/{name}_{i}.err\n{outs[i][-2000:]}"
  return outs


def final_params(workdir, step):
  """The params of a run's checkpoint, restored onto one device of this test process."""
  import jax  # pylint: disable=g-import-not-at-top
  from mlt_flax import runtime  # pylint: disable=g-import-not-at-top
  run = runtime.load_run(workdir, str(step), runtime.DataParallel(jax.devices()[:1]))
  return jax.tree.leaves(jax.device_get(run.variables["params"]))


def assert_close_params(workdir_a, workdir_b):
  # Same global batches, same per-device frames and random streams: the same parameters, up
  # to the order of float sums in the all-reduce (in-process vs gloo). Adam's first steps are
  # ~lr * sign(g), so a parameter whose gradient is ~0 may move by +-lr either way: compare
  # each parameter tensor as a whole, not element by element.
  for a, b in zip(final_params(workdir_a, NUM_STEPS), final_params(workdir_b, NUM_STEPS)):
    assert np.linalg.norm(a - b) <= 1e-3 * np.linalg.norm(a) + 1e-4 * np.sqrt(a.size)


@pytest.fixture(scope="module")
def uninterrupted(synthetic_tfds, tmp_path_factory):
  """Workdirs and printed outputs of an uninterrupted 1x4 and 2x2 run."""
  root = tmp_path_factory.mktemp("uninterrupted")
  return {name: (root / name, run(root / name, synthetic_tfds, p, d))
          for name, p, d in (("1x4", 1, 4), ("2x2", 2, 2))}


@SLOW
def test_two_processes_train_to_identical_parameters(uninterrupted):
  workdir, outs = uninterrupted["2x2"]
  digests = [DIGEST.search(o).groups() for o in outs]
  assert sorted(d[0] for d in digests) == ["0", "1"]
  assert digests[0][1] == digests[1][1]
  assert "on 4 devices" in outs[0]
  assert (workdir / "checkpoints" / str(NUM_STEPS)).is_dir()
  assert (workdir / "summary.json").exists()


@SLOW
def test_one_process_of_four_devices_ends_like_two_of_two(uninterrupted):
  assert_close_params(uninterrupted["1x4"][0], uninterrupted["2x2"][0])


@SLOW
def test_two_processes_killed_mid_run_resume_to_the_same_end(synthetic_tfds, uninterrupted,
                                                             tmp_path):
  # Both processes held inside the evaluation at step 6, then both killed -9: a host lost.
  procs = start(tmp_path, synthetic_tfds, 2, 2, hold=("eval", 3), name="killed")
  for i, p in enumerate(procs):
    fault_points.wait_until_held(p, "eval", 3, f"process {i} (see {tmp_path}/killed_{i}.err)")
  for p in procs:
    p.send_signal(signal.SIGKILL)
    p.wait()
  # Step 2's save completed before step 4's began; step 4's may still have been in flight.
  done = complete_steps(tmp_path)
  assert 2 in done and done[-1] in (2, 4), done
  # The same command on both: resume from the last complete checkpoint, end identical.
  outs = run(tmp_path, synthetic_tfds, 2, 2, name="resumed")
  assert all(f"resuming from checkpoint step {done[-1]}" in o for o in outs)
  reference = DIGEST.search(uninterrupted["2x2"][1][0]).group(2)
  assert [DIGEST.search(o).group(2) for o in outs] == [reference, reference]
  assert_close_params(uninterrupted["1x4"][0], tmp_path)


def evaluate_with(workdir, out_dir, num_processes, devices_per_process):
  """`python -m mlt_flax.evaluate` on `num_processes` processes; returns report.json."""
  port = free_port()
  env = dict(os.environ, MLT_CPU_COLLECTIVES="gloo", JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}")
  procs = [subprocess.Popen(
      [sys.executable, "-m", "mlt_flax.evaluate", f"--workdir={workdir}",
       f"--out_dir={out_dir}", f"--num_processes={num_processes}", f"--process_id={i}",
       f"--coordinator_address=127.0.0.1:{port}"],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(num_processes)]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for i, p in enumerate(procs):
    assert p.returncode == 0, f"process {i}:\n{outs[i][-3000:]}"
  import json  # pylint: disable=g-import-not-at-top
  return json.loads((pathlib.Path(out_dir) / "report.json").read_text())


@SLOW
def test_evaluation_on_two_processes_reports_the_whole_split(uninterrupted, tmp_path):
  # Each process reads its share of the split; the report gathers every process's rows, so
  # 2 processes x 2 devices report what 1 process x 4 devices reports, frame for frame.
  workdir = uninterrupted["2x2"][0]
  one = evaluate_with(workdir, tmp_path / "1x4", 1, 4)
  two = evaluate_with(workdir, tmp_path / "2x2", 2, 2)
  assert two["protocol"] == one["protocol"] and two["num_frames"] == one["num_frames"]
  assert two["num_videos"] == one["num_videos"]
  for scoring in ("fixed_raw", "fixed_smoothed", "tuned_raw", "tuned_smoothed"):
    for au, f1 in one["scores"][scoring]["per_au"].items():
      assert two["scores"][scoring]["per_au"][au] == pytest.approx(f1, abs=1e-6), (scoring, au)
  a = np.load(tmp_path / "1x4" / "predictions.npz")
  b = np.load(tmp_path / "2x2" / "predictions.npz")
  assert list(a["video"]) == list(b["video"]) and (a["frame"] == b["frame"]).all()
  np.testing.assert_allclose(a["probs"], b["probs"], atol=1e-5)


def test_the_digest_the_processes_compare_is_that_of_the_saved_parameters(trained):
  # The runs above are compared by the digest each process prints: it must be a digest of
  # the parameters (as the last checkpoint holds them), not of anything process-local.
  import jax  # pylint: disable=g-import-not-at-top
  from mlt_flax import runtime  # pylint: disable=g-import-not-at-top
  from mlt_flax import train  # pylint: disable=g-import-not-at-top
  _, workdir, summary = trained
  run = runtime.load_run(workdir, str(summary["steps"]), runtime.DataParallel(jax.devices()[:1]))
  params = run.variables["params"]
  assert train.param_digest(params) == summary["param_digest"]
  # And one changed weight changes it.
  leaves, tree = jax.tree.flatten(params)
  leaves[0] = leaves[0].at[(0,) * leaves[0].ndim].add(1e-3)
  assert train.param_digest(jax.tree.unflatten(tree, leaves)) != summary["param_digest"]
