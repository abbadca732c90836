"""Several hosts, proven on one machine: jax.distributed over loopback with CPU collectives.

Two processes, each with 2 fake CPU devices (4 in all), run the real entry point as a user
would on two hosts, and must end holding identical parameters.
"""

import os
import pathlib
import re
import socket
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(workdir, data_dir, num_processes, devices_per_process, extra=()):
  port = free_port()
  env = dict(os.environ, MLT_CPU_COLLECTIVES="gloo", JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}")
  procs = [subprocess.Popen(
      [sys.executable, "-m", "mlt_flax.main", "--config=configs/tiny.py",
       f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
       "--config.train.batch_size=16", "--config.train.num_steps=4",
       "--config.train.eval_every_steps=2", "--config.train.checkpoint_every_steps=2",
       "--config.train.log_every_steps=2", f"--num_processes={num_processes}",
       f"--process_id={i}", f"--coordinator_address=127.0.0.1:{port}", *extra],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(num_processes)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  return [out for out, _ in outs]


def test_two_processes_train_to_identical_parameters(synthetic_tfds, tmp_path):
  outs = launch(tmp_path, synthetic_tfds, num_processes=2, devices_per_process=2)
  digests = [re.search(r"process (\d): final parameter digest (\w+)", o).groups() for o in outs]
  assert sorted(d[0] for d in digests) == ["0", "1"]
  assert digests[0][1] == digests[1][1]
  assert "on 4 devices" in outs[0]
  assert (tmp_path / "checkpoints" / "4").is_dir() and (tmp_path / "summary.json").exists()


def final_params(workdir, step):
  """The params of a run's checkpoint, restored onto one device of this test process."""
  import jax  # pylint: disable=g-import-not-at-top
  from mlt_flax import evaluate  # pylint: disable=g-import-not-at-top
  from mlt_flax import train  # pylint: disable=g-import-not-at-top
  variables, _ = evaluate.restore_variables(workdir, evaluate.load_config(workdir), str(step),
                                            dp=train.DataParallel(jax.devices()[:1]))
  return jax.tree.leaves(jax.device_get(variables["params"]))


def test_one_process_of_four_devices_ends_like_two_of_two(synthetic_tfds, tmp_path):
  # Same global batches, same per-device frames and random streams: the same parameters, up
  # to the order of float sums in the all-reduce (in-process vs gloo). Adam's first steps are
  # ~lr * sign(g), so a parameter whose gradient is ~0 may move by +-lr either way: compare
  # each parameter tensor as a whole, not element by element.
  import numpy as np  # pylint: disable=g-import-not-at-top
  launch(tmp_path / "1x4", synthetic_tfds, num_processes=1, devices_per_process=4)
  launch(tmp_path / "2x2", synthetic_tfds, num_processes=2, devices_per_process=2)
  a_all, b_all = final_params(tmp_path / "1x4", 4), final_params(tmp_path / "2x2", 4)
  for a, b in zip(a_all, b_all):
    assert np.linalg.norm(a - b) <= 1e-3 * np.linalg.norm(a) + 1e-4 * np.sqrt(a.size)
