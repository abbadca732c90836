"""The ABAW3 AU metric: pooled per-AU F1, in-video smoothing, threshold/window tuning, report.

RECIPE "Evaluation (ABAW3 AU track)": F1_t = 2 TP_t / (2 TP_t + FP_t + FN_t) with counts pooled
over every frame (label -1 left out), mean over AUs; probabilities smoothed by a centred moving
mean inside each video, faceless frames masked out; thresholds tuned on a 0.005 grid, never on
the reported split.
"""

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from mlt_flax import aus
from mlt_flax import metrics

AU_NAMES = aus.names(aus.AFFWILD2)


def random_split(seed, num_videos=6, num_aus=12, min_len=1, max_len=40, unannotated=0.1,
                 faceless=0.15, string_ids=False):
  """probs (N, T), labels (N, T) in {-1, 0, 1}, video ids (N,), face mask (N,)."""
  rng = np.random.default_rng(seed)
  lengths = rng.integers(min_len, max_len + 1, num_videos)
  ids = np.repeat(np.arange(num_videos), lengths)
  if string_ids:
    ids = np.array([f"video-{v}" for v in ids])
  n = lengths.sum()
  probs = rng.random((n, num_aus)).astype(np.float32)
  labels = (rng.random((n, num_aus)) < 0.3).astype(np.int64)
  labels[rng.random((n, num_aus)) < unannotated] = -1
  face = rng.random(n) >= faceless
  return probs, labels, ids, face


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
           metrics.f1_on_grid(probs, labels, 0.01, keep))
  monkeypatch.setattr(metrics, "_BLOCK_ROWS", 7)  # many blocks, a ragged last one
  blocked = (metrics.confusion_counts(probs, labels, 0.3, keep),
             metrics.f1_on_grid(probs, labels, 0.01, keep))
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


# ----------------------------------------------------------------------------- tuning


def test_threshold_grid_is_0005_to_0995_with_0_5_exact():
  grid = metrics.threshold_grid(0.005)
  assert grid.size == 199 and grid[0] == 0.005 and grid[-1] == 0.995
  assert 0.5 in grid


@pytest.mark.parametrize("seed,step", [(0, 0.005), (1, 0.01), (2, 0.05), (3, 0.1)])
def test_tune_thresholds_matches_a_brute_force_grid_loop(seed, step):
  probs, labels, _, keep = random_split(seed, num_videos=10)
  probs = np.round(probs, 2)  # many ties between thresholds
  labels[:, 3] = np.minimum(labels[:, 3], 0)  # no positive: every threshold ties at 0
  grid = metrics.threshold_grid(step)
  f1 = np.stack([metrics.f1_scores(probs, labels, g, valid=keep)[0] for g in grid], axis=1)
  want = []
  for t in range(12):
    best = [g for g, f in zip(grid, f1[t]) if f == f1[t].max()]
    want.append(min(best, key=lambda g: (round(abs(g - 0.5), 9), g)))  # nearest 0.5, lower
  got = metrics.tune_thresholds(probs, labels, step, valid=keep)
  np.testing.assert_array_equal(got, want)
  assert got[3] == 0.5
  np.testing.assert_allclose(metrics.f1_on_grid(probs, labels, step, keep), f1, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grid_f1_is_exact_for_probabilities_on_and_next_to_grid_values(dtype):
  grid = metrics.threshold_grid(0.005)
  on = grid.astype(dtype)
  probs = np.concatenate([on, np.nextafter(on, dtype(0)), np.nextafter(on, dtype(1)),
                          dtype([0.0, 1.0])])[:, None].astype(dtype)
  labels = (np.arange(len(probs)) % 3 == 0).astype(int)[:, None]
  want = np.array([metrics.f1_scores(probs, labels, g)[0][0] for g in grid])
  np.testing.assert_array_equal(metrics.f1_on_grid(probs, labels, 0.005)[0], want)


def test_tuned_thresholds_beat_or_tie_0_5_on_the_tuning_data():
  probs, labels, _, _ = random_split(6, num_videos=30)
  probs = probs ** 2  # skewed low: 0.5 is a poor threshold
  tuned = metrics.tune_thresholds(probs, labels)
  f1_tuned, mean_tuned = metrics.f1_scores(probs, labels, tuned)
  f1_fixed, mean_fixed = metrics.f1_scores(probs, labels, 0.5)
  assert np.all(f1_tuned >= f1_fixed)
  assert mean_tuned > mean_fixed


def test_tune_smoothing_picks_the_window_with_the_best_tuned_mean_f1():
  probs, labels, ids, face = random_split(7, num_videos=12)
  windows = (1, 3, 5, 9)
  scores = {w: metrics.f1_scores(metrics.smooth(probs, ids, w, face), labels,
                                 metrics.tune_thresholds(
                                     metrics.smooth(probs, ids, w, face), labels))[1]
            for w in windows}
  window, thresholds = metrics.tune_smoothing(probs, labels, ids, windows, face_valid=face)
  assert scores[window] == max(scores.values())
  np.testing.assert_array_equal(
      thresholds, metrics.tune_thresholds(metrics.smooth(probs, ids, window, face), labels))


# ----------------------------------------------------------------------------- report


@pytest.fixture(name="splits")
def fixture_splits():
  return random_split(10, num_videos=8), random_split(11, num_videos=8)


def test_the_report_refuses_to_tune_on_the_reported_split(splits):
  (p, y, v, _), (pt, yt, vt, _) = splits
  with pytest.raises(ValueError, match="reported split"):
    metrics.evaluation_report(p, y, v, au_names=AU_NAMES, window=5, split="validation",
                              tune=(pt, yt, vt), tuned_on="validation")
  # The same split under another name: the same arrays, copies, another model's outputs.
  for same in [(p, y, v), (p.copy(), y.copy(), v.copy()), (p ** 2, y.copy(), v)]:
    with pytest.raises(ValueError, match="identical"):
      metrics.evaluation_report(p, y, v, au_names=AU_NAMES, window=5, split="validation",
                                tune=same, tuned_on="train_holdout")
  tuning = metrics.tune_split(p, y, v, tuned_on="train_holdout", windows=(5,))
  with pytest.raises(ValueError, match="fingerprint"):
    metrics.evaluation_report(p, y, v, au_names=AU_NAMES, window=5, split="validation",
                              tuning=tuning)


def test_the_report_scores_four_ways_and_records_tuned_on(splits, tmp_path):
  (p, y, v, face), (pt, yt, vt, face_t) = splits
  report = metrics.evaluation_report(p, y, v, au_names=AU_NAMES, window=20,
                                     split="validation", tune=(pt, yt, vt, face_t),
                                     tuned_on="train_holdout", windows=(5, 10),
                                     face_valid=face)
  assert report["split"] == "validation" and report["tuned_on"] == "train_holdout"
  tuning = metrics.tune_split(pt, yt, vt, tuned_on="train_holdout", windows=(5, 10),
                              face_valid=face_t)
  assert report["window_tuned"] == tuning.window
  th_raw = [report["thresholds_tuned_raw"][a] for a in AU_NAMES]
  np.testing.assert_array_equal(th_raw, tuning.thresholds_raw)
  expected = {
      "fixed_raw": metrics.f1_scores(p, y, 0.5),
      "fixed_smoothed": metrics.f1_scores(metrics.smooth(p, v, 20, face), y, 0.5),
      "tuned_raw": metrics.f1_scores(p, y, tuning.thresholds_raw),
      "tuned_smoothed": metrics.f1_scores(metrics.smooth(p, v, tuning.window, face), y,
                                          tuning.thresholds_smoothed),
  }
  for name, (per_au, mean) in expected.items():
    assert report["scores"][name]["mean"] == mean
    assert [report["scores"][name]["per_au"][a] for a in AU_NAMES] == list(per_au)
  # The same report from the precomputed tuning.
  again = metrics.evaluation_report(p, y, v, au_names=AU_NAMES, window=20,
                                    split="validation", tuning=tuning, face_valid=face)
  assert again == report

  metrics.write_report(report, tmp_path)
  assert json.loads((tmp_path / "report.json").read_text()) == report
  rows = (tmp_path / "per_au_f1.csv").read_text().splitlines()
  assert rows[0].startswith("au,fixed_raw,fixed_smoothed,tuned_raw,tuned_smoothed")
  assert [r.split(",")[0] for r in rows[1:]] == [*AU_NAMES, "mean"]
  metrics.plot_report(report, tmp_path / "f1.png")
  assert (tmp_path / "f1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
