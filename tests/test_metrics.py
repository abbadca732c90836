"""The ABAW3 AU metric: pooled per-AU F1 and in-video smoothing.

docs/recipe.md, "## Evaluation (ABAW3 AU track)": F1_t = 2 TP_t / (2 TP_t + FP_t + FN_t) with
counts pooled over every frame (label -1 left out), mean over AUs; probabilities smoothed by a
centred moving mean inside each video, faceless frames masked out.
"""

import numpy as np
import pytest
from sklearn import metrics as skm

from metric_fixtures import random_split
from mlt_flax import metrics
from mlt_flax import tuning


def sklearn_f1_per_au(probs, labels, thresholds=0.5):
  """The reference: scikit-learn's binary F1 per AU, over that AU's annotated frames."""
  th = np.broadcast_to(thresholds, labels.shape[1:])
  out = []
  for t in range(labels.shape[1]):
    m = labels[:, t] >= 0
    # An AU never annotated has no frames to score: 0, as zero_division=0 would give.
    out.append(skm.f1_score(labels[m, t], probs[m, t] >= th[t], zero_division=0)
               if m.any() else 0.0)
  return np.array(out)


def naive_smooth(probs, ids, window, face, empty=0.0):
  """The definition, frame by frame: mean of the valid frames of the same video in
  [i - window // 2, i + (window - 1) // 2]; ``empty`` when there are none."""
  n = len(probs)
  out = np.empty(probs.shape, np.float64)
  for i in range(n):
    js = [j for j in range(i - window // 2, i + (window - 1) // 2 + 1)
          if 0 <= j < n and ids[j] == ids[i] and face[j]]
    out[i] = np.mean(probs[js].astype(np.float64), axis=0) if js else empty
  return out


# ----------------------------------------------------------------------------- F1


@pytest.mark.parametrize("n,t", [(1, 2), (7, 3), (200, 12), (1000, 17)])
def test_f1_equals_sklearn_on_fully_annotated_multilabel(n, t):
  rng = np.random.default_rng(n * 100 + t)
  probs = rng.random((n, t))
  labels = (rng.random((n, t)) < 0.3).astype(int)
  labels[:, 0] = 0  # an all-negative AU: F1 = 0 by the zero_division=0 convention
  per_au, mean = metrics.f1_scores(probs, labels)
  want = skm.f1_score(labels, probs >= 0.5, average=None, zero_division=0)
  np.testing.assert_allclose(per_au, want, rtol=1e-12)
  assert mean == pytest.approx(
      skm.f1_score(labels, probs >= 0.5, average="macro", zero_division=0), rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_f1_leaves_unannotated_frames_out_per_au(seed):
  probs, labels, _, _ = random_split(seed, unannotated=0.3)
  labels[:, 1] = np.where(labels[:, 1] == 1, 0, labels[:, 1])  # all-negative, partly -1
  labels[:, 2] = -1  # never annotated: no counts at all, F1 = 0
  per_au, mean = metrics.f1_scores(probs, labels)
  want = sklearn_f1_per_au(probs, labels)
  np.testing.assert_allclose(per_au, want, rtol=1e-12)
  assert per_au[1] == per_au[2] == 0.0
  assert mean == pytest.approx(want.mean(), rel=1e-12)


def test_per_au_thresholds_are_applied_per_au():
  probs, labels, _, _ = random_split(0)
  thresholds = np.linspace(0.1, 0.9, 12)
  per_au, _ = metrics.f1_scores(probs, labels, thresholds)
  np.testing.assert_allclose(per_au, sklearn_f1_per_au(probs, labels, thresholds), rtol=1e-12)
  # A frame at exactly the threshold is predicted positive.
  per_au, _ = metrics.f1_scores([[0.3]], [[1]], thresholds=[0.3])
  assert per_au[0] == 1.0


def test_scalar_threshold_equals_the_same_threshold_for_every_au():
  probs, labels, _, _ = random_split(1)
  np.testing.assert_array_equal(metrics.f1_scores(probs, labels, 0.3)[0],
                                metrics.f1_scores(probs, labels, np.full(12, 0.3))[0])


def test_invalid_rows_are_not_counted():
  probs, labels, _, keep = random_split(2)
  np.testing.assert_array_equal(metrics.f1_scores(probs, labels, valid=keep)[0],
                                metrics.f1_scores(probs[keep], labels[keep])[0])


def test_counts_add_up_to_the_annotated_frames():
  probs, labels, _, _ = random_split(3)
  c = metrics.confusion_counts(probs, labels)
  np.testing.assert_array_equal(c.tp + c.fp + c.fn + c.tn, (labels >= 0).sum(0))
  np.testing.assert_array_equal(c.tp, ((probs >= 0.5) & (labels == 1)).sum(0))
  np.testing.assert_array_equal(c.tn, ((probs < 0.5) & (labels == 0)).sum(0))


def test_counts_merged_over_batches_equal_counts_of_the_whole():
  probs, labels, _, _ = random_split(4, num_videos=20)
  pad = np.ones(len(probs), bool)
  pad[-5:] = False  # the last batch's padding rows
  whole = metrics.confusion_counts(probs, labels, 0.4, valid=pad)
  batches = [metrics.confusion_counts(probs[i:i + 64], labels[i:i + 64], 0.4, pad[i:i + 64])
             for i in range(0, len(probs), 64)]
  merged = metrics.Counts.zeros(12)
  for b in batches:
    merged = merged.merge(b)
  for field in ("tp", "fp", "fn", "tn"):
    np.testing.assert_array_equal(getattr(merged, field), getattr(whole, field))
    np.testing.assert_array_equal(getattr(sum(batches), field), getattr(whole, field))
  np.testing.assert_array_equal(merged.f1()[0],
                                metrics.f1_scores(probs, labels, 0.4, valid=pad)[0])


def test_scoring_in_row_blocks_equals_scoring_at_once(monkeypatch):
  probs, labels, _, keep = random_split(5, num_videos=10)
  whole = (metrics.confusion_counts(probs, labels, 0.3, keep),
           tuning.f1_on_grid(probs, labels, 0.01, keep))
  monkeypatch.setattr(metrics, "_BLOCK_ROWS", 7)  # many blocks, a ragged last one
  blocked = (metrics.confusion_counts(probs, labels, 0.3, keep),
             tuning.f1_on_grid(probs, labels, 0.01, keep))
  for field in ("tp", "fp", "fn", "tn"):
    np.testing.assert_array_equal(getattr(blocked[0], field), getattr(whole[0], field))
  np.testing.assert_array_equal(blocked[1], whole[1])


def test_bad_inputs_are_refused():
  with pytest.raises(ValueError, match="labels must be in"):
    metrics.f1_scores([[0.5]], [[2]])
  with pytest.raises(ValueError, match="must both be"):
    metrics.f1_scores(np.zeros((3, 2)), np.zeros((3, 3), int))
  with pytest.raises(ValueError, match="finite"):
    metrics.f1_scores([[np.nan]], [[1]])
  with pytest.raises(ValueError, match="thresholds"):
    metrics.f1_scores(np.zeros((3, 2)), np.zeros((3, 2), int), thresholds=[0.5, 0.5, 0.5])


# ----------------------------------------------------------------------------- smoothing


@pytest.mark.parametrize("window", [1, 2, 3, 5, 8, 20, 25, 100])
@pytest.mark.parametrize("seed", range(3))
def test_smoothing_equals_the_per_video_frame_loop(window, seed):
  probs, _, ids, face = random_split(seed, string_ids=seed == 1)
  probs[~face] = np.nan  # faceless frames' outputs are meaningless and must not leak
  got = metrics.smooth(probs, ids, window, face)
  np.testing.assert_allclose(got, naive_smooth(probs, ids, window, face), rtol=0, atol=1e-12)


def test_smoothing_never_crosses_a_video_boundary():
  probs = np.zeros((10, 1))
  probs[4] = 1.0  # a spike on video A's last frame
  ids = np.array([0] * 5 + [1] * 5)
  out = metrics.smooth(probs, ids, 5)
  assert out[5, 0] == 0.0  # video B's first frame sees none of it
  assert out[4, 0] == pytest.approx(1 / 3)  # A's last frame: mean of its 3 existing frames


def test_smoothing_averages_only_existing_frames_at_the_edges():
  probs = np.arange(6, dtype=np.float64)[:, None]
  out = metrics.smooth(probs, np.zeros(6, int), 5)[:, 0]
  # Window 5 covers [i-2, i+2]: frame 0 averages frames 0..2, frame 5 averages frames 3..5.
  np.testing.assert_allclose(out, [1.0, 1.5, 2.0, 3.0, 3.5, 4.0])


def test_even_windows_reach_one_frame_further_back():
  probs = np.array([[0.0], [1.0], [0.0], [0.0]])
  # Window 2 covers [i-1, i].
  np.testing.assert_allclose(metrics.smooth(probs, np.zeros(4, int), 2)[:, 0],
                             [0.0, 0.5, 0.5, 0.0])


def test_faceless_frames_are_excluded_but_receive_their_neighbours_mean():
  probs = np.array([[0.2], [np.nan], [0.8], [0.4]])
  face = np.array([True, False, True, True])
  out = metrics.smooth(probs, np.zeros(4, int), 3, face)[:, 0]
  np.testing.assert_allclose(out, [0.2, 0.5, 0.6, 0.6])


def test_a_faceless_gap_longer_than_the_window_gets_the_empty_value_inside():
  probs = np.full((12, 2), 0.9)
  face = np.ones(12, bool)
  face[2:10] = False  # 8 faceless frames, window 3 reaches 1 frame either side
  out = metrics.smooth(probs, np.zeros(12, int), 3, face, empty_value=-1.0)
  np.testing.assert_allclose(out[[0, 1, 2, 9, 10, 11], 0], 0.9)  # next to a face
  np.testing.assert_array_equal(out[3:9], -1.0)  # no face in reach
  assert metrics.smooth(probs, np.zeros(12, int), 3, face)[5, 0] == 0.0  # default: 0


def test_window_one_is_the_identity():
  probs, _, ids, face = random_split(5)
  probs = probs.astype(np.float64) ** 3  # values whose running sums round
  np.testing.assert_array_equal(metrics.smooth(probs, ids, 1), probs)
  masked = metrics.smooth(probs, ids, 1, face)
  np.testing.assert_array_equal(masked[face], probs[face])
  np.testing.assert_array_equal(masked[~face], 0.0)  # no face in a 1-frame window


def test_rows_not_grouped_by_video_are_refused():
  probs = np.zeros((4, 1))
  with pytest.raises(ValueError, match="sorted by"):
    metrics.smooth(probs, np.array(["a", "b", "a", "b"]), 3)
  with pytest.raises(ValueError, match="sorted by"):
    metrics.smooth(probs, np.zeros(4, int), 3, frames=[0, 2, 1, 3])
  with pytest.raises(ValueError, match="window"):
    metrics.smooth(probs, np.zeros(4, int), 0)
