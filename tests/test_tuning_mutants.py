"""Tuning's remaining rules, each one that a mutant of mlt_flax/tuning.py once broke unseen
(benchmarks/mutation_check.py; docs/testing.md): the grid's ends and refusals, the tie rules
of thresholds and windows, what tune_split passes on, and what the fingerprint tells apart."""

import numpy as np
import pytest

from metric_fixtures import random_split
from mlt_flax import metrics
from mlt_flax import tuning


@pytest.mark.parametrize("step", [0.005, 0.01, 0.05, 0.1, 0.125, 0.25, 0.5])
def test_the_grid_is_every_multiple_of_the_step_strictly_between_0_and_1(step):
  # For a step dividing 1: step, 2 step, ..., 1 - step.
  count = round(1 / step) - 1
  np.testing.assert_allclose(tuning.threshold_grid(step), step * np.arange(1, count + 1),
                             rtol=0, atol=1e-12)
  assert tuning.threshold_grid(step).size == count


@pytest.mark.parametrize("step,want", [(0.5, [0.5]), (0.25, [0.25, 0.5, 0.75]),
                                       (0.3, [0.3, 0.6, 0.9]), (0.4, [0.4, 0.8]),
                                       (0.1, [round(0.1 * k, 1) for k in range(1, 10)])])
def test_threshold_grid_is_every_multiple_of_the_step_below_1(step, want):
  np.testing.assert_array_equal(tuning.threshold_grid(step), want)


@pytest.mark.parametrize("step", [0.0, -0.1, 0.51, 0.7, 1.0])
def test_a_step_that_leaves_no_threshold_is_refused(step):
  with pytest.raises(ValueError, match="grid_step"):
    tuning.threshold_grid(step)


def test_ties_keep_0_5_then_go_to_the_nearest_then_to_the_lower():
  # An AU without positives scores 0 at every threshold: 0.5.
  probs = np.array([[0.1], [0.6], [0.9]])
  assert tuning.tune_thresholds(probs, np.zeros((3, 1), int), 0.05)[0] == 0.5
  # Every threshold in (0.44, 0.56] separates the two frames (F1 1): 0.5 is among them.
  assert tuning.tune_thresholds([[0.44], [0.56]], [[0], [1]], 0.05)[0] == 0.5
  # Thresholds 0.6, 0.65, 0.7 all score 1: the nearest to 0.5.
  assert tuning.tune_thresholds([[0.2], [0.55], [0.7]], [[0], [0], [1]], 0.05)[0] == 0.6
  # On a 0.1 grid, 0.4 and 0.6 both score 2/3 (0.5 scores 0.4): equally close, the lower.
  probs = np.array([0.55, 0.45, 0.35, 0.65, 0.15, 0.55])[:, None]
  labels = np.array([0, 1, 0, 1, 0, 0])[:, None]
  f1 = dict(zip(np.round(tuning.threshold_grid(0.1), 1), tuning.f1_on_grid(probs, labels, 0.1)[0]))
  assert f1[0.4] == f1[0.6] == 2 / 3 == max(f1.values()) and f1[0.5] == 0.4
  assert tuning.tune_thresholds(probs, labels, 0.1)[0] == 0.4


def test_equally_good_windows_go_to_the_smallest():
  # Probabilities constant inside each video: every window smooths them to themselves, so
  # every window scores the same.
  _, labels, ids, _ = random_split(2, num_videos=8)
  probs = np.random.default_rng(0).random((ids.max() + 1, labels.shape[1]))[ids]
  window, _ = tuning.tune_smoothing(probs, labels, ids, windows=(25, 10, 5, 15))
  assert window == 5
  with pytest.raises(ValueError, match="at least one window"):
    tuning.tune_smoothing(probs, labels, ids, windows=())


def test_tune_split_tunes_raw_and_smoothed_with_the_face_mask_and_frame_numbers():
  probs, labels, ids, face = random_split(4, num_videos=10)
  frames = np.concatenate([np.arange((ids == v).sum()) * 3 for v in np.unique(ids)])
  got = tuning.tune_split(probs, labels, ids, tuned_on="train", windows=(3, 7),
                          grid_step=0.01, face_valid=face, frames=frames)
  window, thresholds = tuning.tune_smoothing(probs, labels, ids, (3, 7), 0.01, face, frames)
  assert (got.window, got.tuned_on) == (window, "train")
  np.testing.assert_array_equal(got.thresholds_smoothed, thresholds)
  np.testing.assert_array_equal(got.thresholds_raw, tuning.tune_thresholds(probs, labels, 0.01))
  assert got.fingerprint == tuning.split_fingerprint(labels, ids)
  # The mask and the frame numbers matter: smoothed thresholds without them differ here.
  plain = tuning.tune_split(probs, labels, ids, tuned_on="train", windows=(3, 7),
                            grid_step=0.01)
  assert not np.array_equal(plain.thresholds_smoothed, got.thresholds_smoothed)


def test_the_fingerprint_is_a_128_bit_digest_of_labels_and_videos_only():
  _, labels, ids, _ = random_split(1)
  fingerprint = tuning.split_fingerprint(labels, ids)
  assert len(fingerprint) == 32 and int(fingerprint, 16) >= 0  # 16 bytes, hex
  assert tuning.split_fingerprint(labels.copy(), ids.copy()) == fingerprint
  other = labels.copy()
  other[0, 0] = 1 - max(other[0, 0], 0)
  assert tuning.split_fingerprint(other, ids) != fingerprint
  # Video names as Python strings (object arrays) or numpy strings: the same split.
  names = np.array([f"v{v}" for v in ids])
  assert tuning.split_fingerprint(labels, names.astype(object)) == (
      tuning.split_fingerprint(labels, names))


def test_what_tuning_chose_cannot_be_changed_afterwards():
  # A report's thresholds are the ones tuning chose: the record is frozen, as the counts are.
  import dataclasses  # pylint: disable=g-import-not-at-top
  probs, labels, ids, _ = random_split(0)
  chosen = tuning.tune_split(probs, labels, ids, tuned_on="train", windows=(3,))
  with pytest.raises(dataclasses.FrozenInstanceError):
    chosen.window = 25
  with pytest.raises(dataclasses.FrozenInstanceError):
    metrics.Counts.zeros(2).tp = np.ones(2, np.int64)


def test_grid_scoring_in_row_blocks_covers_every_row(monkeypatch):
  # Splits larger than a block (7 rows here, 32768 by default) are scored block by block.
  probs, labels, _, keep = random_split(5, num_videos=8)
  whole = tuning.f1_on_grid(probs, labels, 0.05, keep)
  monkeypatch.setattr(metrics, "_BLOCK_ROWS", 7)
  assert len(probs) > 7 * labels.shape[1]  # blocks counted on the wrong axis would miss rows
  np.testing.assert_array_equal(tuning.f1_on_grid(probs, labels, 0.05, keep), whole)


def test_equal_tuning_scores_ship_the_simpler_set_without_smoothing():
  raw, smoothed = np.array([0.3, 0.4]), np.array([0.2, 0.6])
  tie = tuning.Tuning(raw, 5, smoothed, "val", score_raw=0.7, score_smoothed=0.7)
  window, thresholds = tie.shipped()
  assert window == 1 and thresholds is raw
  better = tuning.Tuning(raw, 5, smoothed, "val", score_raw=0.7, score_smoothed=0.7 + 1e-9)
  assert better.shipped()[0] == 5


def test_the_paper_smoothing_refuses_a_frame_given_twice():
  probs = np.full((3, 1), 0.5)
  with pytest.raises(ValueError, match="each frame once"):
    tuning.paper_smooth(probs, ["a", "a", "a"], [1, 2, 2], np.ones(3, bool), 3)


def test_the_paper_protocol_takes_a_grid_of_two_thresholds():
  probs = np.array([[0.2], [0.8], [0.6], [0.1]])
  labels = np.array([[0], [1], [1], [0]])
  result = tuning.paper_protocol(probs, labels, ["a"] * 4, [1, 2, 3, 4], np.ones(4, bool),
                                 windows=[1], num_thresholds=2)  # thresholds 0 and 1
  assert result["thresholds"].tolist() == [0.0]
  with pytest.raises(ValueError, match="at least 2 thresholds"):
    tuning.paper_protocol(probs, labels, ["a"] * 4, [1, 2, 3, 4], np.ones(4, bool),
                          windows=[1], num_thresholds=1)


def test_the_paper_protocol_keeps_the_first_of_equally_good_windows():
  # Constant probabilities: every window smooths to the same values, so all score alike.
  probs = np.full((6, 1), 0.7)
  labels = np.array([[1], [0], [1], [1], [0], [1]])
  for windows in ([5, 3], [3, 5]):
    result = tuning.paper_protocol(probs, labels, ["a"] * 6, np.arange(1, 7),
                                   np.ones(6, bool), windows=windows, num_thresholds=11)
    assert result["window"] == windows[0]
