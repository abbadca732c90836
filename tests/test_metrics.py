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


def naive_smooth_by_frame(probs, ids, frames, window, face, empty=0.0):
  """The definition with frame numbers: row i averages the valid rows of its video whose
  frame lies in [f_i - window // 2, f_i + (window - 1) // 2]."""
  out = np.empty(probs.shape, np.float64)
  for i in range(len(probs)):
    js = [j for j in range(len(probs)) if ids[j] == ids[i] and face[j] and
          frames[i] - window // 2 <= frames[j] <= frames[i] + (window - 1) // 2]
    out[i] = np.mean(probs[js].astype(np.float64), axis=0) if js else empty
  return out


def strided_split(seed, stride_choices=(1, 2, 5)):
  """A random split whose frame numbers have gaps (a strided split, missing rows); each
  video's frames start anywhere, so videos' frame ranges overlap."""
  probs, _, ids, face = random_split(seed)
  rng = np.random.default_rng(seed + 100)
  frames = np.empty(len(ids), np.int64)
  for v in np.unique(ids):
    rows = np.flatnonzero(ids == v)
    frames[rows] = rng.integers(0, 50) + np.cumsum(rng.choice(stride_choices, len(rows)))
  return probs, ids, frames, face


@pytest.mark.parametrize("window", [2, 3, 5, 10, 25])
@pytest.mark.parametrize("seed", range(3))
def test_smoothing_over_frame_numbers_with_gaps_equals_the_definition(window, seed):
  probs, ids, frames, face = strided_split(seed)
  probs[~face] = np.nan
  got = metrics.smooth(probs, ids, window, face, frames=frames)
  np.testing.assert_allclose(got, naive_smooth_by_frame(probs, ids, frames, window, face),
                             rtol=0, atol=1e-12)
  # Without a mask too (every row counts).
  every = np.ones(len(ids), bool)
  np.testing.assert_allclose(metrics.smooth(np.nan_to_num(probs), ids, window, frames=frames),
                             naive_smooth_by_frame(np.nan_to_num(probs), ids, frames, window,
                                                   every), rtol=0, atol=1e-12)


def test_contiguous_frame_numbers_smooth_as_rows():
  probs, _, ids, face = random_split(7)
  frames = np.concatenate([np.arange((ids == v).sum()) + 3 * v for v in np.unique(ids)])
  np.testing.assert_allclose(metrics.smooth(probs, ids, 5, face, frames=frames),
                             naive_smooth(probs, ids, 5, face), rtol=0, atol=1e-12)


def test_a_single_frame_smooths_to_itself():
  np.testing.assert_allclose(metrics.smooth([[0.3, 0.7]], ["a"], 5), [[0.3, 0.7]])
  assert metrics.smooth(np.zeros((0, 2)), np.zeros(0), 5).shape == (0, 2)


def test_repeated_frame_numbers_are_refused():
  with pytest.raises(ValueError, match="strictly increase"):
    metrics.smooth(np.zeros((3, 1)), np.zeros(3, int), 3, frames=[0, 1, 1])


def test_no_aus_score_zero():
  per_au, mean = metrics.Counts.zeros(0).f1()
  assert per_au.shape == (0,) and mean == 0.0


def test_counts_sum_from_zero_and_refuse_other_au_counts():
  probs, labels, _, _ = random_split(3)
  parts = [metrics.confusion_counts(probs[i::3], labels[i::3]) for i in range(3)]
  whole = metrics.confusion_counts(probs, labels)
  total = sum(parts)  # starts from the int 0
  for field in ("tp", "fp", "fn", "tn"):
    np.testing.assert_array_equal(getattr(total, field), getattr(whole, field))
  with pytest.raises(ValueError, match="cannot merge"):
    parts[0] + metrics.Counts.zeros(5)


def test_the_recipe_defaults():
  # docs/recipe.md, "## Evaluation (ABAW3 AU track)": threshold 0.5; thresholds tuned on a
  # 0.005 grid; smoothing windows of 5-25 frames; an empty window predicts negative.
  assert metrics.DEFAULT_THRESHOLD == 0.5 and metrics.DEFAULT_GRID_STEP == 0.005
  np.testing.assert_allclose(tuning.threshold_grid(), np.arange(1, 200) * 0.005, atol=1e-12)
  assert metrics.DEFAULT_WINDOWS == (5, 10, 15, 20, 25)
  # Scored with the default threshold: 0.5 is a positive prediction, just below it not.
  counts = metrics.confusion_counts([[0.5], [0.4999]], [[1], [1]])
  assert counts.tp[0] == 1 and counts.fn[0] == 1


# ------------------------------------------------------------ the challenge's protocol


def naive_fill(probs, face, ids, frames):
  """The definition: a faceless row takes the nearest face row of its video by frame number
  (ties: the earlier frame); 0 when its video has no face."""
  out = np.where(face[:, None], probs, 0.0)
  for i in np.flatnonzero(~face):
    js = [j for j in np.flatnonzero(face) if ids[j] == ids[i]]
    if js:
      out[i] = probs[min(js, key=lambda j: (abs(frames[j] - frames[i]), frames[j]))]
  return out


@pytest.mark.parametrize("seed", range(4))
def test_fill_faceless_equals_the_nearest_face_frame_of_the_same_video(seed):
  probs, ids, frames, face = strided_split(seed, stride_choices=(1, 3))
  face[ids == ids[0]] = False  # one video without a face: 0
  got = metrics.fill_faceless(probs, face, ids, frames)
  np.testing.assert_array_equal(got, naive_fill(probs, face, ids, frames))
  assert (got[ids == ids[0]] == 0).all()


def test_fill_faceless_ties_go_to_the_earlier_frame_and_defaults_are_one_video():
  probs = np.array([[0.1], [0.0], [0.9], [0.0], [0.0], [0.3]])
  face = np.array([True, False, True, False, False, True])
  # Frame 1 is between 0 and 2: the earlier (0.1); 3 nearest 2, 4 nearest 5.
  np.testing.assert_allclose(metrics.fill_faceless(probs, face)[:, 0],
                             [0.1, 0.1, 0.9, 0.9, 0.3, 0.3])
  assert (metrics.fill_faceless(probs, np.zeros(6, bool)) == 0).all()
  np.testing.assert_array_equal(metrics.fill_faceless(probs, np.ones(6, bool)), probs)
  assert metrics.fill_faceless(np.zeros((0, 2)), np.zeros(0, bool)).shape == (0, 2)


@pytest.mark.parametrize("window", [1, 2, 5])
def test_challenge_probs_fill_then_smooth_every_frame(window):
  probs, ids, frames, face = strided_split(1)
  filled = naive_fill(probs, face, ids, frames)
  every = np.ones(len(ids), bool)
  np.testing.assert_allclose(metrics.challenge_probs(probs, face, ids, frames, window),
                             naive_smooth_by_frame(filled, ids, frames, window, every),
                             rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_smoothing_many_short_videos_with_gaps_never_mixes_two_videos(seed):
  # Videos of 1-3 rows whose frame numbers jump by up to 7: the windows of neighbouring
  # videos would overlap if the per-video sort keys were not far enough apart.
  probs, _, ids, face = random_split(seed, num_videos=40, max_len=3)
  rng = np.random.default_rng(seed)
  frames = np.empty(len(ids), np.int64)
  for v in np.unique(ids):
    rows = np.flatnonzero(ids == v)
    frames[rows] = rng.integers(0, 30) + np.cumsum(rng.integers(1, 8, len(rows)))
  for window in (2, 3, 4, 5, 7, 25):
    np.testing.assert_allclose(
        metrics.smooth(probs, ids, window, face, frames=frames),
        naive_smooth_by_frame(probs, ids, frames, window, face), rtol=0, atol=1e-12)


def test_gaps_inside_videos_count_even_when_the_videos_meet_without_one():
  # Video a holds frames 0 and 2, video b frames 3 and 5: every gap is inside a video.
  probs = np.array([[0.0], [1.0], [0.0], [1.0]])
  ids, frames = np.array([0, 0, 1, 1]), np.array([0, 2, 3, 5])
  face = np.ones(4, bool)
  # Window 3 spans [f - 1, f + 1]: no row has a neighbour within one frame of its video.
  np.testing.assert_array_equal(metrics.smooth(probs, ids, 3, frames=frames), probs)
  np.testing.assert_allclose(metrics.smooth(probs, ids, 5, frames=frames),
                             naive_smooth_by_frame(probs, ids, frames, 5, face))
  # A one-row video at the highest frame number followed by one that starts at the lowest:
  # their sort keys are as close as two videos' get, and no window may bridge them.
  probs, ids, frames = np.array([[1.0], [0.0], [0.5]]), np.array([0, 1, 1]), np.array([10, 0, 2])
  for window in (2, 3):
    np.testing.assert_array_equal(metrics.smooth(probs, ids, window, frames=frames), probs)


def test_fill_faceless_keeps_a_single_frame_with_a_face():
  np.testing.assert_array_equal(metrics.fill_faceless([[0.7, 0.2]], [True]), [[0.7, 0.2]])


@pytest.mark.parametrize("length", [1, 2, 3])
def test_fill_faceless_on_every_face_pattern_of_two_short_videos(length):
  # Short videos are where keys of neighbouring videos come closest: every pattern of faces
  # over two videos of `length` frames, against the brute-force nearest face.
  ids = np.repeat(["a", "b"], length)
  frames = np.tile(np.arange(1, length + 1), 2)
  probs = np.arange(1.0, 2 * length + 1)[:, None]
  for pattern in range(2 ** (2 * length)):
    face = np.array([(pattern >> i) & 1 for i in range(2 * length)], bool)
    np.testing.assert_array_equal(metrics.fill_faceless(probs, face, ids, frames),
                                  naive_fill(probs, face, ids, frames), err_msg=str(face))
