"""Per-AU thresholds and the smoothing window tuned on a 0.005 grid (docs/recipe.md,
"## Evaluation (ABAW3 AU track)"): exact against brute-force loops over the grid."""

import numpy as np
import pytest

from metric_fixtures import random_split
from mlt_flax import metrics
from mlt_flax import tuning


def test_threshold_grid_is_0005_to_0995_with_0_5_exact():
  grid = tuning.threshold_grid(0.005)
  assert grid.size == 199 and grid[0] == 0.005 and grid[-1] == 0.995
  assert 0.5 in grid


@pytest.mark.parametrize("seed,step", [(0, 0.005), (1, 0.01), (2, 0.05), (3, 0.1)])
def test_tune_thresholds_matches_a_brute_force_grid_loop(seed, step):
  probs, labels, _, keep = random_split(seed, num_videos=10)
  probs = np.round(probs, 2)  # many ties between thresholds
  labels[:, 3] = np.minimum(labels[:, 3], 0)  # no positive: every threshold ties at 0
  grid = tuning.threshold_grid(step)
  f1 = np.stack([metrics.f1_scores(probs, labels, g, valid=keep)[0] for g in grid], axis=1)
  want = []
  for t in range(12):
    best = [g for g, f in zip(grid, f1[t]) if f == f1[t].max()]
    want.append(min(best, key=lambda g: (round(abs(g - 0.5), 9), g)))  # nearest 0.5, lower
  got = tuning.tune_thresholds(probs, labels, step, valid=keep)
  np.testing.assert_array_equal(got, want)
  assert got[3] == 0.5
  np.testing.assert_allclose(tuning.f1_on_grid(probs, labels, step, keep), f1, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grid_f1_is_exact_for_probabilities_on_and_next_to_grid_values(dtype):
  grid = tuning.threshold_grid(0.005)
  on = grid.astype(dtype)
  probs = np.concatenate([on, np.nextafter(on, dtype(0)), np.nextafter(on, dtype(1)),
                          dtype([0.0, 1.0])])[:, None].astype(dtype)
  labels = (np.arange(len(probs)) % 3 == 0).astype(int)[:, None]
  want = np.array([metrics.f1_scores(probs, labels, g)[0][0] for g in grid])
  np.testing.assert_array_equal(tuning.f1_on_grid(probs, labels, 0.005)[0], want)


def test_tuned_thresholds_beat_or_tie_0_5_on_the_tuning_data():
  probs, labels, _, _ = random_split(6, num_videos=30)
  probs = probs ** 2  # skewed low: 0.5 is a poor threshold
  tuned = tuning.tune_thresholds(probs, labels)
  f1_tuned, mean_tuned = metrics.f1_scores(probs, labels, tuned)
  f1_fixed, mean_fixed = metrics.f1_scores(probs, labels, 0.5)
  assert np.all(f1_tuned >= f1_fixed)
  assert mean_tuned > mean_fixed


def test_tune_smoothing_picks_the_window_with_the_best_tuned_mean_f1():
  probs, labels, ids, face = random_split(7, num_videos=12)
  windows = (1, 3, 5, 9)
  scores = {w: metrics.f1_scores(metrics.smooth(probs, ids, w, face), labels,
                                 tuning.tune_thresholds(
                                     metrics.smooth(probs, ids, w, face), labels))[1]
            for w in windows}
  window, thresholds = tuning.tune_smoothing(probs, labels, ids, windows, face_valid=face)
  assert scores[window] == max(scores.values())
  np.testing.assert_array_equal(
      thresholds, tuning.tune_thresholds(metrics.smooth(probs, ids, window, face), labels))


def authors_way(probs, labels, ids, face, windows, num_thresholds):
  """An independent re-implementation of the authors' evaluation (src/abaw3_utils.py), with
  TensorFlow's own 'SAME' conv1d per video and a plain loop over thresholds."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  grid = np.linspace(0, 1, num_thresholds)
  best = None
  for w in windows:
    smoothed = []
    for v in np.unique(ids):
      rows = ids == v
      kernel = tf.ones((w, 1, 1))
      num = tf.nn.conv1d(tf.constant(probs[rows].T[:, :, None], tf.float64), tf.cast(
          kernel, tf.float64), stride=1, padding="SAME")[:, :, 0].numpy().T
      mask = np.tile(face[rows].astype(np.float64)[None, :, None], (probs.shape[1], 1, 1))
      den = tf.nn.conv1d(tf.constant(mask), tf.cast(kernel, tf.float64), stride=1,
                         padding="SAME")[:, :, 0].numpy().T
      smoothed.append(num / (den + 1e-7))
    smoothed = np.concatenate(smoothed)
    scores = np.zeros((len(grid), probs.shape[1]))
    for g, th in enumerate(grid):
      positive = (smoothed - th >= 0).astype(float)
      annotated = labels >= 0
      y = np.where(annotated, labels, 0)
      tp = (positive * y * annotated).sum(0)
      fp = (positive * (1 - y) * annotated).sum(0)
      fn = ((1 - positive) * y * annotated).sum(0)
      prec, rec = (tp + 1e-7) / (tp + fp + 1e-7), (tp + 1e-7) / (tp + fn + 1e-7)
      scores[g] = 2 * prec * rec / (prec + rec + 1e-7)
    mean = scores.max(0).mean()
    if best is None or mean > best[0]:
      best = (mean, w, grid[scores.argmax(0)], scores.max(0))
  return best


def test_the_paper_protocol_equals_an_independent_reimplementation_of_the_authors():
  # Full-rate videos (a row per frame), faceless rows whose placeholder outputs still enter
  # the moving sum, odd and even windows (the 'SAME' alignment differs for even ones).
  probs, labels, ids, face = random_split(12, num_videos=7, min_len=3, max_len=60)
  frames = np.concatenate([np.arange(1, (ids == v).sum() + 1) for v in np.unique(ids)])
  windows = (5, 10, 15, 20, 25)
  got = tuning.paper_protocol(probs, labels, ids, frames, face, windows=windows,
                              num_thresholds=200)
  mean, window, thresholds, per_au = authors_way(probs, labels, ids, face, windows, 200)
  assert got["window"] == window
  np.testing.assert_array_equal(got["thresholds"], thresholds)
  np.testing.assert_allclose(got["per_au"], per_au, rtol=1e-9)
  assert got["mean"] == pytest.approx(mean, rel=1e-9)
  # Even windows reach one frame further forward: frame 1 of window 4 averages frames 1-3.
  one = tuning.paper_smooth(np.arange(1.0, 7.0)[:, None], np.zeros(6), np.arange(1, 7),
                            np.ones(6, bool), 4)
  assert one[0, 0] == pytest.approx(2.0) and one[2, 0] == pytest.approx(3.5)


def test_the_shipped_set_is_the_tuned_one_with_the_best_tuning_data_score():
  probs, labels, ids, _ = random_split(8, num_videos=10)
  tuned = tuning.tune_split(probs, labels, ids, tuned_on="holdout", windows=(5, 9))
  raw = metrics.f1_scores(probs, labels, tuned.thresholds_raw)[1]
  smooth = metrics.f1_scores(metrics.smooth(probs, ids, tuned.window), labels,
                             tuned.thresholds_smoothed)[1]
  assert tuned.score_raw == pytest.approx(raw) and tuned.score_smoothed == pytest.approx(smooth)
  window, thresholds = tuned.shipped()
  if smooth > raw:
    assert window == tuned.window and np.array_equal(thresholds, tuned.thresholds_smoothed)
  else:
    assert window == 1 and np.array_equal(thresholds, tuned.thresholds_raw)
