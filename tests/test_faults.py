"""Faults inflicted on training: kill -9, SIGTERM, a corrupt checkpoint, a failing disk, NaN.

A killed run loses at most the steps since its last checkpoint and, restarted with the same
command, ends with the same parameters as a run that was never interrupted.
"""

import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from conftest import complete_steps
from conftest import loop_config
import fault_points
from mlt_flax import checkpoints
from mlt_flax import input_pipeline
from mlt_flax import train

SLOW = pytest.mark.slow  # kill -9, SIGTERM and storage faults on real subprocess runs

ROOT = pathlib.Path(__file__).resolve().parents[1]
DIGEST = re.compile(r"final parameter digest (\w+)")


def command(workdir, data_dir, num_steps=12, every=3):
  return [sys.executable, "-m", "mlt_flax.main", "--config=configs/tiny.py",
          f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
          "--config.train.batch_size=16", f"--config.train.num_steps={num_steps}",
          f"--config.train.eval_every_steps={every}",
          f"--config.train.checkpoint_every_steps={every}", "--config.train.log_every_steps=3"]


def env():
  return dict(os.environ, PYTHONUNBUFFERED="1",
              XLA_FLAGS="--xla_force_host_platform_device_count=8")


def run_to_end(workdir, data_dir, **kw):
  r = subprocess.run(command(workdir, data_dir, **kw), cwd=ROOT, env=env(),
                     capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  return r.stdout


@pytest.fixture(scope="module")
def reference(synthetic_tfds, tmp_path_factory):
  """The digest of the parameters of an uninterrupted run."""
  out = run_to_end(tmp_path_factory.mktemp("reference"), synthetic_tfds)
  return DIGEST.search(out).group(1)


@SLOW
def test_kill_9_at_random_points_then_resume_ends_identical(synthetic_tfds, reference,
                                                            tmp_path):
  rng = np.random.default_rng(0)
  kills = []
  for attempt in range(3):
    proc = subprocess.Popen(command(tmp_path, synthetic_tfds), cwd=ROOT, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    # Wait until it trains, then kill at a random moment: mid-step, mid-save or mid-eval.
    for line in proc.stdout:
      if line.startswith("training"):
        break
    time.sleep(rng.uniform(0.5, 6.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kills.append(complete_steps(tmp_path))
    # Never a partial checkpoint under a step name: a complete one restores, or none exists.
    assert not list((tmp_path / "checkpoints").glob("*.unreadable")) if (
        tmp_path / "checkpoints").exists() else True
  out = run_to_end(tmp_path, synthetic_tfds)
  print("checkpoints after each kill:", kills)
  if kills[-1]:
    assert f"resuming from checkpoint step {kills[-1][-1]}" in out
  assert DIGEST.search(out).group(1) == reference


def kill_at(point, n, workdir, data_dir):
  """Runs training held at the n-th `point` (tests/fault_points.py), kills -9 it there.

  Returns what the run printed up to the kill.
  """
  argv = command(workdir, data_dir)
  proc = subprocess.Popen([argv[0], *fault_points.program(point, n), *argv[3:]], cwd=ROOT,
                          env=env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True)
  printed = fault_points.wait_until_held(proc, point, n)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  return printed


def partial_checkpoints(workdir):
  return sorted(p.name for p in (pathlib.Path(workdir) / "checkpoints").glob("*tmp*"))


@SLOW
def test_kill_9_inside_a_save_and_inside_an_evaluation_then_resume_ends_identical(
    synthetic_tfds, reference, tmp_path):
  # 1. Killed inside the asynchronous save of step 6: its files are written, not committed.
  kill_at("save", 2, tmp_path, synthetic_tfds)
  assert complete_steps(tmp_path) == [3]
  partial = partial_checkpoints(tmp_path)
  assert partial and all(name.startswith("6.") for name in partial), partial
  stale = tmp_path / "checkpoints" / partial[0] / "left_by_the_kill"
  stale.touch()  # tells this partial folder from the restart's own save of step 6
  # 2. The same command resumes from 3, never from the partial 6 (which it clears away);
  #    killed again inside its second evaluation, at step 9.
  out = kill_at("eval", 2, tmp_path, synthetic_tfds)
  assert "resuming from checkpoint step 3" in out
  assert not list((tmp_path / "checkpoints").rglob(stale.name))
  last = complete_steps(tmp_path)[-1]  # 6, unless the kill beat step 6's background save
  assert last in (3, 6)
  if last == 6:  # nothing was in flight: the kill came before step 9's save
    assert partial_checkpoints(tmp_path) == []
  # 3. The same command again: resumes from the last complete checkpoint and ends exactly
  #    where the uninterrupted run ends.
  out = run_to_end(tmp_path, synthetic_tfds)
  assert f"resuming from checkpoint step {last}" in out
  assert DIGEST.search(out).group(1) == reference


@SLOW
def test_sigterm_saves_a_checkpoint_and_exits_0(synthetic_tfds, tmp_path):
  proc = subprocess.Popen(command(tmp_path, synthetic_tfds, num_steps=100000, every=100000),
                          cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True)
  for line in proc.stdout:
    if line.startswith("training"):
      break
  time.sleep(3)
  sent = time.monotonic()
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  waited = time.monotonic() - sent
  assert proc.returncode == 0
  saved = re.search(r"SIGTERM: saved checkpoint step (\d+)", out)
  assert saved and complete_steps(tmp_path) == [int(saved.group(1))]
  print(f"SIGTERM to exit: {waited:.1f}s")


@pytest.fixture
def two_checkpoints(synthetic_tfds, tmp_path):
  config = loop_config(synthetic_tfds, num_steps=6, eval_every_steps=3,
                       checkpoint_every_steps=3)
  train.train_and_evaluate(config, str(tmp_path))
  assert complete_steps(tmp_path) == [3, 6]
  return config, tmp_path


@SLOW
def test_a_truncated_latest_checkpoint_falls_back_to_the_previous_one(two_checkpoints,
                                                                      capsys):
  config, workdir = two_checkpoints
  biggest = max((p for p in (workdir / "checkpoints" / "6").rglob("*") if p.is_file()),
                key=lambda p: p.stat().st_size)
  biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])
  summary = train.train_and_evaluate(config, str(workdir))
  out = capsys.readouterr().out
  assert "checkpoint step 6" in out and "unreadable" in out and "falling back" in out
  assert "resuming from checkpoint step 3" in out
  assert summary["steps"] == 6 and complete_steps(workdir) == [3, 6]
  assert (workdir / "checkpoints" / "6.unreadable").is_dir()  # set aside, not deleted


def test_a_truncated_latest_checkpoint_is_set_aside_and_the_previous_one_restored(trained,
                                                                               tmp_path,
                                                                               capsys):
  # The restore half of the fall-back above, on a copy of the shared tiny run (checkpoints 6
  # and 12): no training, so it stays in the fast tier.
  import shutil  # pylint: disable=g-import-not-at-top
  from mlt_flax import runtime  # pylint: disable=g-import-not-at-top
  config, source, _ = trained
  workdir = tmp_path / "run"
  shutil.copytree(source, workdir)
  biggest = max((p for p in (workdir / "checkpoints" / "12").rglob("*") if p.is_file()),
                key=lambda p: p.stat().st_size)
  biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])
  abstract = runtime.abstract_state(config, runtime.DataParallel())
  state, step = checkpoints.restore_latest(checkpoints.manager(workdir, config), abstract)
  out = capsys.readouterr().out
  assert step == 6 and "checkpoint step 12" in out and "falling back" in out
  assert (workdir / "checkpoints" / "12.unreadable").is_dir()  # set aside, not deleted
  assert complete_steps(workdir) == [6]
  intact = checkpoints.restore(checkpoints.manager(source, config), 6, abstract)
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(intact.params)):
    np.testing.assert_array_equal(a, b)


# Storage faults, made real in a private mount namespace (`unshare --mount`): root ignores
# file modes, but not the kernel's EROFS or ENOSPC. Each prologue runs before the training
# command, on the run's checkpoint folder {ck}.
STORAGE_FAULTS = {
    "read-only file system": "mount --bind {ck} {ck} && mount -o remount,ro,bind {ck}",
    # The folder moved onto a 16 MB tmpfs, then filled to 256 KB free: less than a checkpoint.
    "no space left on device": (
        "stage=$(mktemp -d) && cp -a {ck}/. $stage && mount -t tmpfs -o size=16m tmpfs {ck} && "
        "cp -a $stage/. {ck} && rm -r $stage && "
        "(dd if=/dev/zero of={ck}/.filler bs=64k 2>/dev/null || true) && "
        "truncate -s -256K {ck}/.filler"),
}


@SLOW
@pytest.mark.parametrize("fault", sorted(STORAGE_FAULTS))
def test_a_storage_fault_at_save_time_is_a_clear_error_and_keeps_the_old_ones(
    fault, synthetic_tfds, tmp_path):
  run_to_end(tmp_path, synthetic_tfds, num_steps=6)
  folder = tmp_path / "checkpoints"
  hashes = "cd {ck} && find 3 6 -type f | sort | xargs sha256sum"
  before = subprocess.run(hashes.format(ck=folder), shell=True, capture_output=True,
                          text=True, check=True).stdout
  # The same command, continued to step 9 on the faulty storage; the hashes of steps 3 and 6
  # are taken inside the namespace, where the fault (and the tmpfs) still exists.
  script = (f"{STORAGE_FAULTS[fault].format(ck=folder)} || exit 99; "
            f"{' '.join(command(tmp_path, synthetic_tfds, num_steps=9))}; rc=$?; "
            f"{hashes.format(ck=folder)} > {tmp_path / 'after.txt'}; exit $rc")
  r = subprocess.run(["unshare", "--mount", "sh", "-c", script], cwd=ROOT, env=env(),
                     capture_output=True, text=True, timeout=600)
  assert "resuming from checkpoint step 6" in r.stdout, r.stderr[-3000:]
  assert r.returncode == 1, r.stderr[-3000:]
  # One error line, ours: Orbax's background threads' tracebacks stay off the terminal.
  (error,) = [l for l in r.stderr.splitlines() if l.startswith("error: ")]
  assert "Traceback" not in r.stderr, r.stderr[-3000:]
  assert re.fullmatch(rf"error: could not write checkpoint step 9 to \S+ \(.*{fault}.*\); "
                      r"earlier checkpoints \[3, 6\] are intact", error, flags=re.IGNORECASE)
  assert (tmp_path / "after.txt").read_text() == before


def poison_at(step_to_poison, monkeypatch):
  """Makes the training stream carry an infinite label at one step."""
  real = input_pipeline.train_iterator

  def poisoned(config, *, start_step=0, **kw):
    for i, batch in enumerate(real(config, start_step=start_step, **kw), start=start_step):
      if i == step_to_poison:
        batch["labels"][0, 0] = np.inf
      yield batch

  monkeypatch.setattr(input_pipeline, "train_iterator", poisoned)


@SLOW
def test_nan_stop_policy_stops_and_leaves_the_last_good_checkpoint(synthetic_tfds, tmp_path,
                                                                   monkeypatch):
  poison_at(4, monkeypatch)  # the 5th step
  config = loop_config(synthetic_tfds, num_steps=9, eval_every_steps=3,
                       checkpoint_every_steps=3)
  with pytest.raises(FloatingPointError, match=r"step 5; stopping .* last good checkpoint is "
                                               r"step 3"):
    train.train_and_evaluate(config, str(tmp_path))
  assert complete_steps(tmp_path) == [3]
  restored = checkpoints.manager(tmp_path, config).restore(3)["state"]
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(restored["params"]))


@SLOW
def test_nan_skip_policy_skips_the_step_and_counts_it(synthetic_tfds, tmp_path, monkeypatch):
  poison_at(4, monkeypatch)
  config = loop_config(synthetic_tfds, num_steps=6, eval_every_steps=3,
                       checkpoint_every_steps=3, on_nonfinite="skip")
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["nonfinite_steps"] == 1 and summary["steps"] == 6
