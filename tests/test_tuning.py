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
