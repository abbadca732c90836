"""The workdir's checkpoints: the best one is the one with the highest validation mean F1,
kept when newer ones come, and found again by a manager opened later (evaluate, predict)."""

import json

import jax
import numpy as np
import pytest

from mlt_flax import checkpoints
from mlt_flax import configuration


def _config(keep: int):
  config = configuration.defaults()
  config.checkpoint.keep = keep
  config.checkpoint.async_save = False
  return config


def test_the_best_checkpoint_is_the_highest_f1_not_the_latest(tmp_path):
  config = _config(keep=1)
  mngr = checkpoints.manager(tmp_path, config)
  for step, f1 in ((10, 0.30), (20, 0.55), (30, 0.40), (40, 0.45)):
    checkpoints.save(mngr, step, {"w": np.full(3, step, np.float32)}, config,
                     metrics={checkpoints.BEST_METRIC: f1})
  checkpoints.wait(mngr)
  assert checkpoints.select_step(mngr, "best") == 20
  assert checkpoints.select_step(mngr, "latest") == 40
  assert sorted(mngr.all_steps()) == [20, 40]  # the last `keep` plus the best
  reopened = checkpoints.manager(tmp_path, config)
  assert checkpoints.select_step(reopened, "best") == 20
  restored = reopened.restore(20)["state"]
  np.testing.assert_array_equal(restored["w"], np.full(3, 20, np.float32))


def test_without_any_evaluation_the_best_is_the_latest(tmp_path):
  config = _config(keep=3)
  mngr = checkpoints.manager(tmp_path, config)
  for step in (1, 2):
    checkpoints.save(mngr, step, {"w": np.zeros(2, np.float32)}, config)
  checkpoints.wait(mngr)
  assert checkpoints.select_step(mngr, "best") == 2


def test_a_long_storage_error_keeps_its_cause_when_cut():
  # TensorStore's shape (seen in CI): the cause sits in the middle, before a long JSON spec.
  spec = '{"driver":"zarr3","kvstore":{"path":"/ck/9/state/"},' + '"x":0,' * 60 + '}'
  tensorstore = (f"FAILED_PRECONDITION: Error opening \"zarr3\" driver: Error writing local "
                 f"file \"/ck/9/state/zarr.json\" [tensorstore_spec='{spec}'] "
                 "[os_error_code='28']")
  assert checkpoints._brief(tensorstore).endswith("... [Errno 28] No space left on device")
  assert checkpoints._brief(tensorstore).startswith("FAILED_PRECONDITION: Error opening")
  python = "[Errno 30] Read-only file system: '" + "/deep" * 60 + "'"
  assert "Read-only file system" in checkpoints._brief(python)
  assert checkpoints._brief("short") == "short"


def _saved(tmp_path, steps=(1, 2)):
  config = _config(keep=3)
  mngr = checkpoints.manager(tmp_path, config)
  for step in steps:
    checkpoints.save(mngr, step, {"w": np.full(3, step, np.float32)}, config,
                     metrics={checkpoints.BEST_METRIC: 0.1 * step})
  checkpoints.wait(mngr)
  return config, mngr


def _tree(folder):
  """Every file under folder, with its bytes."""
  return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
          if p.is_file()}


def test_a_checkpoint_of_other_arrays_does_not_fit_and_is_never_set_aside(tmp_path):
  _, mngr = _saved(tmp_path)
  before = _tree(tmp_path / "checkpoints")
  other = {"w": jax.ShapeDtypeStruct((4,), np.float32)}
  with pytest.raises(checkpoints.CheckpointMismatch, match="does not fit the run's config"):
    checkpoints.restore(mngr, 2, other)
  with pytest.raises(checkpoints.CheckpointMismatch):
    checkpoints.restore_latest(mngr, other)
  assert _tree(tmp_path / "checkpoints") == before  # nothing renamed, nothing written


def test_only_a_checkpoint_whose_files_cannot_be_read_is_set_aside(tmp_path):
  _, mngr = _saved(tmp_path)
  biggest = max((p for p in (tmp_path / "checkpoints" / "2" / "state").rglob("*")
                 if p.is_file()), key=lambda p: p.stat().st_size)
  biggest.write_bytes(biggest.read_bytes()[:biggest.stat().st_size // 2])
  fits = {"w": jax.ShapeDtypeStruct((3,), np.float32)}
  with pytest.raises(checkpoints.CheckpointUnreadable, match="cannot be read"):
    checkpoints.restore(mngr, 2, fits)
  state, step = checkpoints.restore_latest(mngr, fits)
  assert step == 1 and np.array_equal(state["w"], np.full(3, 1, np.float32))
  assert (tmp_path / "checkpoints" / "2.unreadable").is_dir()


def test_a_changed_config_is_refused_naming_each_field_and_both_values(tmp_path):
  config, _ = _saved(tmp_path)
  (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
  more = configuration.defaults()
  more.train.num_steps, more.train.eval_every_steps, more.checkpoint.keep = 99, 7, 5
  checkpoints.check_resumable(tmp_path, more)  # longer, other cadences: the same run
  changed = configuration.defaults()
  changed.model.d_model, changed.optim.grad_clip_norm = 32, 1.0
  with pytest.raises(checkpoints.ConfigChanged) as e:
    checkpoints.check_resumable(tmp_path, changed)
  assert "model.d_model 128 -> 32" in str(e.value) and "optim.grad_clip_norm 0.0 -> 1.0" in (
      str(e.value)) and "\n" not in str(e.value)
  # Without config.json, the latest checkpoint's own copy of the config decides.
  (tmp_path / "config.json").unlink()
  with pytest.raises(checkpoints.ConfigChanged, match="model.d_model 128 -> 32"):
    checkpoints.check_resumable(tmp_path, changed)


def test_on_several_processes_process_0_decides_whether_there_is_a_run_to_check(tmp_path,
                                                                               monkeypatch):
  # Process 0 creates checkpoints/ right after this check; a process that looks later must
  # still do what process 0 does (open no reader), or Orbax's barriers stop pairing up.
  config, _ = _saved(tmp_path)
  changed = configuration.defaults()
  changed.model.d_model = 32
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  asked = []
  def process_0_saw(value):
    asked.append(bool(value))
    return np.int32(0)  # process 0 found no checkpoints folder
  monkeypatch.setattr(checkpoints.multihost_utils, "broadcast_one_to_all", process_0_saw)
  monkeypatch.setattr(checkpoints, "_reader", lambda *a: pytest.fail("opened a reader"))
  checkpoints.check_resumable(tmp_path, changed)  # this process sees the folder: it follows
  assert asked == [True]
