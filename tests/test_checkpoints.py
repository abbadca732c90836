"""The workdir's checkpoints: the best one is the one with the highest validation mean F1,
kept when newer ones come, and found again by a manager opened later (evaluate, predict)."""

import numpy as np

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
