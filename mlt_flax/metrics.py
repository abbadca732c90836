"""The ABAW3 AU-track metric, on the host with numpy: pooled per-AU F1, smoothing, tuning.

RECIPE "Evaluation (ABAW3 AU track)". With probabilities p (N, T), labels y (N, T) in
{-1, 0, 1} (-1: not annotated, left out of that AU's counts) and thresholds th (T,):
  pred_{i,t} = p_{i,t} >= th_t
  TP_t, FP_t, FN_t pooled over every scored frame i of the split
  F1_t = 2 TP_t / (2 TP_t + FP_t + FN_t), and F1_t = 0 when the denominator is 0
         (an AU with no positive label and no positive prediction; scikit-learn's
         ``zero_division=0``)
  mean F1 = mean_t F1_t.

Before thresholding, probabilities may be smoothed by a centred moving mean inside each video
(`smooth`). Thresholds (`tune_thresholds`) and the smoothing window (`tune_smoothing`) may be
tuned on a grid, on data that is NOT the reported split (`evaluation_report` refuses that).

Two masks, with different jobs:
  * ``valid`` in `confusion_counts` / `f1_scores` / `tune_thresholds`: rows that are scored
    (False for padding rows, which are not frames at all).
  * ``valid`` in `smooth` and ``face_valid`` elsewhere: frames whose prediction is trusted
    (False for faceless frames). They are left out of every moving mean but still receive a
    smoothed value, and they are still scored: the challenge scores every labelled frame.

Everything is vectorised over frames, AUs and grid thresholds: it runs on whole splits
(about a million frames) in well under a second.
"""

import dataclasses
import hashlib
import json
import pathlib
from typing import Any, Optional, Sequence, Union

import numpy as np

# The challenge's fixed decision threshold.
DEFAULT_THRESHOLD = 0.5
# Step of the per-AU threshold grid (RECIPE: 0.005, i.e. thresholds 0.005, 0.010, ..., 0.995).
DEFAULT_GRID_STEP = 0.005
# Smoothing windows tried when tuning (RECIPE: 5-25 frames).
DEFAULT_WINDOWS = (5, 10, 15, 20, 25)
# Smoothed value of a frame whose window holds no valid (face) frame: predicted negative.
DEFAULT_EMPTY_VALUE = 0.0
# Grid values are rounded to this many decimals so that 0.5 is on the grid exactly.
_GRID_DECIMALS = 12
# Rows per block in the scoring passes: small enough for the (rows, T) temporaries to stay in
# cache (about twice as fast as whole-array passes at N = 1e6), large enough to amortise the
# per-block overhead.
_BLOCK_ROWS = 1 << 15

ArrayLike = Union[np.ndarray, Sequence]
_SCORINGS = ("fixed_raw", "fixed_smoothed", "tuned_raw", "tuned_smoothed")


# ----------------------------------------------------------------------------- counts and F1


@dataclasses.dataclass(frozen=True)
class Counts:
  """Per-AU confusion counts, pooled over frames; each field is an int64 array (T,).

  Counts are additive, so a loop can score batch by batch and `merge` (or `+`) them:
  ``sum(batches, Counts.zeros(T)).f1()`` equals `f1_scores` on the concatenated batches.
  """
  tp: np.ndarray
  fp: np.ndarray
  fn: np.ndarray
  tn: np.ndarray

  @classmethod
  def zeros(cls, num_aus: int) -> "Counts":
    """All-zero counts for ``num_aus`` AUs (the identity of `merge`)."""
    z = np.zeros(num_aus, np.int64)
    return cls(z, z.copy(), z.copy(), z.copy())

  def merge(self, other: "Counts") -> "Counts":
    """The counts of the union of both frame sets."""
    if self.tp.shape != other.tp.shape:
      raise ValueError(f"cannot merge counts of {self.tp.shape[0]} and "
                       f"{other.tp.shape[0]} AUs")
    return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn,
                  self.tn + other.tn)

  def __add__(self, other: "Counts") -> "Counts":
    return self.merge(other)

  def __radd__(self, other):
    # Lets the builtin `sum` start from 0.
    return self if isinstance(other, int) and other == 0 else self.merge(other)

  def f1(self) -> tuple[np.ndarray, float]:
    """(per-AU F1 (T,) float64, mean F1); F1 = 0 where 2 TP + FP + FN = 0."""
    per_au = _f1_from_counts(self.tp, self.fp, self.fn)
    return per_au, float(per_au.mean()) if per_au.size else 0.0


def _f1_from_counts(tp, fp, fn) -> np.ndarray:
  """2 TP / (2 TP + FP + FN) elementwise, 0 where the denominator is 0."""
  num = 2.0 * np.asarray(tp, np.float64)
  den = num + fp + fn
  return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _check_scoring_inputs(probs, labels, valid):
  """Arrays as numpy, shapes and label values checked; returns probs, labels, row mask."""
  probs = np.asarray(probs)
  labels = np.asarray(labels)
  if probs.ndim != 2 or probs.shape != labels.shape:
    raise ValueError(f"probs {probs.shape} and labels {labels.shape} must both be (N, T)")
  if labels.size and (labels.min() < -1 or labels.max() > 1):
    raise ValueError("labels must be in {-1, 0, 1} (-1: not annotated)")
  # One sum is a cheap test for NaN anywhere (no (N, T) mask is built).
  if not np.isfinite(probs.sum()):
    raise ValueError("probs must be finite (a NaN would read as a negative prediction)")
  if valid is not None:
    valid = np.asarray(valid, bool)
    if valid.shape != probs.shape[:1]:
      raise ValueError(f"valid {valid.shape} must be (N,) = {probs.shape[:1]}")
  return probs, labels, valid


def _thresholds_array(thresholds, num_aus: int) -> np.ndarray:
  """A scalar or (T,) threshold as a float64 (T,) array."""
  th = np.asarray(thresholds, np.float64)
  if th.ndim == 0:
    return np.full(num_aus, float(th))
  if th.shape != (num_aus,):
    raise ValueError(f"thresholds {th.shape} must be a scalar or ({num_aus},)")
  return th


def confusion_counts(probs: ArrayLike,
                     labels: ArrayLike,
                     thresholds: Union[float, ArrayLike] = DEFAULT_THRESHOLD,
                     valid: Optional[ArrayLike] = None) -> Counts:
  """Pooled per-AU TP/FP/FN/TN of ``probs >= thresholds`` against ``labels``.

  Args:
    probs: (N, T) probabilities in [0, 1].
    labels: (N, T) ints in {-1, 0, 1}; -1 (not annotated) is left out of that AU's counts.
    thresholds: a scalar or (T,) per-AU thresholds; a frame is predicted positive when its
      probability is >= the threshold.
    valid: optional (N,) bool; rows with False (e.g. batch padding) are not counted.

  Returns:
    `Counts` with (T,) int64 fields.
  """
  probs, labels, valid = _check_scoring_inputs(probs, labels, valid)
  th = _thresholds_array(thresholds, probs.shape[1])
  # Counts are additive: score block by block (see _BLOCK_ROWS) and merge.
  counts = Counts.zeros(probs.shape[1])
  for i in range(0, probs.shape[0], _BLOCK_ROWS):
    block = slice(i, i + _BLOCK_ROWS)
    counts += _block_counts(probs[block], labels[block], th,
                            None if valid is None else valid[block])
  return counts


def _block_counts(probs, labels, th, valid) -> Counts:
  """`confusion_counts` of one block of rows, inputs already checked."""
  num_aus = probs.shape[1]
  # One bincount over flat (AU, class, prediction) keys; class 0 collects label -1 and
  # invalid rows, 1 is a negative label, 2 a positive one.
  keys = labels.astype(np.intp) + 1
  if valid is not None:
    keys *= valid[:, None]
  keys *= 2
  keys += probs >= th
  keys += 6 * np.arange(num_aus)
  hist = np.bincount(keys.ravel(), minlength=6 * num_aus).reshape(num_aus, 3, 2)
  return Counts(tp=hist[:, 2, 1], fp=hist[:, 1, 1], fn=hist[:, 2, 0], tn=hist[:, 1, 0])


def f1_scores(probs: ArrayLike,
              labels: ArrayLike,
              thresholds: Union[float, ArrayLike] = DEFAULT_THRESHOLD,
              valid: Optional[ArrayLike] = None) -> tuple[np.ndarray, float]:
  """Per-AU F1 with counts pooled over all frames, and their mean (the ABAW3 AU metric).

  Args: as `confusion_counts`.

  Returns:
    (per-AU F1 (T,) float64, mean F1 over the T AUs). An AU with 2 TP + FP + FN = 0 scores 0,
    as scikit-learn's ``f1_score(..., zero_division=0)``.
  """
  return confusion_counts(probs, labels, thresholds, valid).f1()


# ----------------------------------------------------------------------------- smoothing


def _video_runs(video_ids: ArrayLike, n: int,
                frames: Optional[ArrayLike] = None) -> tuple[np.ndarray, np.ndarray]:
  """Start and end (exclusive) row of each row's video, both (N,) int64.

  Raises ValueError unless every video's rows are contiguous (and, when ``frames`` is given,
  frame indices strictly increase inside each video).
  """
  ids = np.asarray(video_ids)
  if ids.shape != (n,):
    raise ValueError(f"video_ids {ids.shape} must be (N,) = ({n},)")
  if n == 0:
    return np.zeros(0, np.int64), np.zeros(0, np.int64)
  new_run = np.empty(n, bool)
  new_run[0] = True
  np.not_equal(ids[1:], ids[:-1], out=new_run[1:])
  run_starts = np.flatnonzero(new_run)
  if np.unique(ids[run_starts]).size != run_starts.size:
    raise ValueError("rows must be sorted by (video, frame): some video's rows are not "
                     "contiguous (its id appears in more than one run)")
  if frames is not None:
    frames = np.asarray(frames)
    if frames.shape != (n,):
      raise ValueError(f"frames {frames.shape} must be (N,) = ({n},)")
    if np.any((np.diff(frames) <= 0) & ~new_run[1:]):
      raise ValueError("rows must be sorted by (video, frame): frame indices do not "
                       "strictly increase inside a video")
  run_ends = np.append(run_starts[1:], n)
  run_of_row = np.cumsum(new_run) - 1
  return run_starts[run_of_row], run_ends[run_of_row]


def smooth(probs: ArrayLike,
           video_ids: ArrayLike,
           window: int,
           valid: Optional[ArrayLike] = None,
           *,
           frames: Optional[ArrayLike] = None,
           empty_value: float = DEFAULT_EMPTY_VALUE) -> np.ndarray:
  """Centred moving mean of the probabilities over ``window`` frames inside each video.

  Row i of a video spanning rows [s, e) becomes the mean of the valid rows among
  [max(i - window // 2, s), min(i + (window - 1) // 2, e - 1)]: odd windows are symmetric,
  even ones reach one frame further back than forward (window 20: 10 back, 9 forward). The
  window never crosses a video boundary and shrinks at a video's edges (no padding). Rows with
  ``valid`` False (faceless frames) never enter a mean, yet get the mean of their valid
  neighbours; a row whose window holds no valid row gets ``empty_value``. Window 1 returns the
  valid rows unchanged.

  Computed with one cumulative sum over the whole array, differenced at each row's clipped
  window ends, so there is no Python loop over frames or videos.

  Args:
    probs: (N, T) probabilities, rows sorted by (video, frame).
    video_ids: (N,) video id of each row (ints or strings); each video's rows contiguous.
    window: window length in frames, >= 1.
    valid: optional (N,) bool; False for frames whose prediction is untrusted (no face).
    frames: optional (N,) frame indices, only to check the order (strictly increasing
      inside each video).
    empty_value: the value of a row with no valid row in its window.

  Returns:
    (N, T) float64 smoothed probabilities.

  Raises:
    ValueError: on a window < 1, mismatched shapes or rows not sorted by video.
  """
  probs = np.asarray(probs)
  if probs.ndim != 2:
    raise ValueError(f"probs {probs.shape} must be (N, T)")
  if int(window) != window or window < 1:
    raise ValueError(f"window = {window!r}: expected an integer >= 1")
  window = int(window)
  n = probs.shape[0]
  start, end = _video_runs(video_ids, n, frames)
  back, forward = window // 2, (window - 1) // 2
  if valid is not None:
    valid = np.asarray(valid, bool)
    if valid.shape != (n,):
      raise ValueError(f"valid {valid.shape} must be (N,) = ({n},)")
  if window == 1:
    # The formula below gives the same up to cumulative-sum rounding; this is exact.
    out = probs.astype(np.float64)
    if valid is not None:
      out[~valid] = empty_value
    return out
  # csum[back + k] = sum of the valid rows [0, k), for k in [-back, n + forward]: a running
  # sum padded with its end values, so an unclipped window is a plain shifted difference.
  # float64 keeps those differences accurate to ~1e-10 at N = 1e6.
  csum = np.zeros((back + 1 + n + forward, probs.shape[1]), np.float64)
  # Copy under the mask (not multiply): faceless rows may hold NaN or garbage.
  np.copyto(csum[back + 1:back + 1 + n], probs,
            where=True if valid is None else valid[:, None])
  np.cumsum(csum, axis=0, out=csum)
  total = csum[window:window + n] - csum[:n]
  rows = np.arange(n)
  lo = np.maximum(rows - back, start)
  hi = np.minimum(rows + forward + 1, end)
  # Only rows within half a window of their video's ends need the clipped window.
  clipped = np.flatnonzero((lo != rows - back) | (hi != rows + forward + 1))
  total[clipped] = csum[back + hi[clipped]] - csum[back + lo[clipped]]
  if valid is None:
    total /= (hi - lo)[:, None]
    return total
  counts = np.zeros(back + 1 + n + forward, np.int64)
  counts[back + 1:back + 1 + n] = valid
  np.cumsum(counts, out=counts)
  num = counts[window:window + n] - counts[:n]
  num[clipped] = counts[back + hi[clipped]] - counts[back + lo[clipped]]
  np.divide(total, num[:, None], out=total, where=num[:, None] > 0)
  total[num == 0] = empty_value
  return total


# ----------------------------------------------------------------------------- tuning


def threshold_grid(grid_step: float = DEFAULT_GRID_STEP) -> np.ndarray:
  """The thresholds tried when tuning: step, 2 step, ... < 1 (0.005, ..., 0.995 by default).

  Values are rounded to the nearest decimal so that 0.5 is exactly on the grid (for steps
  dividing it).
  """
  if not 0 < grid_step <= 0.5:  # a grid holding at least one threshold
    raise ValueError(f"grid_step = {grid_step!r}: expected 0 < step <= 0.5")
  num = int(np.floor((1.0 - grid_step / 2) / grid_step))
  return np.round(grid_step * np.arange(1, num + 1), _GRID_DECIMALS)


def f1_on_grid(probs: ArrayLike,
               labels: ArrayLike,
               grid_step: float = DEFAULT_GRID_STEP,
               valid: Optional[ArrayLike] = None) -> np.ndarray:
  """Per-AU F1 at every threshold of `threshold_grid(grid_step)`, (T, G) float64, in one pass.

  Each probability is binned once by how many grid thresholds it reaches, the bins are
  counted per AU and label (bincount), and a reversed cumulative sum gives, for every
  threshold at once, how many positives and negatives are predicted positive.

  Args:
    probs, labels, valid: as `confusion_counts`.
    grid_step: step of the threshold grid.
  """
  probs, labels, valid = _check_scoring_inputs(probs, labels, valid)
  grid = threshold_grid(grid_step)
  num_aus, num_bins = probs.shape[1], grid.size + 1
  hist = np.zeros((3, num_aus, num_bins), np.int64)
  for i in range(0, probs.shape[0], _BLOCK_ROWS):  # blocks: see _BLOCK_ROWS
    block = slice(i, i + _BLOCK_ROWS)
    hist += _block_grid_histogram(probs[block], labels[block], grid, grid_step,
                                  None if valid is None else valid[block])
  neg_hist, pos_hist = hist[1], hist[2]
  # Predicted positive at threshold g: the rows in bins g + 1, ..., G.
  tp = np.cumsum(pos_hist[:, ::-1], axis=1)[:, ::-1][:, 1:]
  fp = np.cumsum(neg_hist[:, ::-1], axis=1)[:, ::-1][:, 1:]
  fn = pos_hist.sum(1, keepdims=True) - tp
  return _f1_from_counts(tp, fp, fn)


def _block_grid_histogram(probs, labels, grid, grid_step, valid) -> np.ndarray:
  """(3, T, G + 1) counts of one block's entries by class (0: not scored, 1: negative,
  2: positive), AU and bin (how many grid thresholds the probability reaches)."""
  num_aus, num_bins = probs.shape[1], grid.size + 1
  # bins[i, t] = #{g : grid_g <= p_it}, so p_it >= grid_g  <=>  g < bins[i, t]. The grid is
  # uniform, so floor(p / step) is that count up to one either way (rounding of p / step and
  # of the grid values); one comparison each way against the grid itself makes it exact, and
  # ~10x faster than a binary search (searchsorted) per entry.
  padded = np.concatenate([[-np.inf], grid, [np.inf]])  # padded[g + 1] = grid_g
  bins = np.floor(probs * (1.0 / grid_step))
  np.clip(bins, 0, grid.size, out=bins)
  bins = bins.astype(np.intp)
  bins += padded[bins + 1] <= probs
  bins -= padded[bins] > probs
  # One bincount over flat (class, AU, bin) keys; class 0 collects label -1 and invalid rows.
  cls = labels.astype(np.intp) + 1
  if valid is not None:
    cls *= valid[:, None]
  bins += num_bins * (np.arange(num_aus) + num_aus * cls)
  hist = np.bincount(bins.ravel(), minlength=3 * num_aus * num_bins)
  return hist.reshape(3, num_aus, num_bins)


def _best_thresholds(f1: np.ndarray, grid: np.ndarray) -> np.ndarray:
  """Per row of f1 (T, G), the grid value with the highest F1; ties go to the value closest
  to 0.5, then to the lower one."""
  distance = np.round(np.abs(grid - DEFAULT_THRESHOLD), _GRID_DECIMALS)
  order = np.lexsort((grid, distance))  # preference order: nearest 0.5 first
  ranked = f1[:, order]
  # F1 values are exact ratios of integers, so equal scores compare equal.
  first_best = np.argmax(ranked == ranked.max(axis=1, keepdims=True), axis=1)
  return grid[order[first_best]]


def tune_thresholds(probs: ArrayLike,
                    labels: ArrayLike,
                    grid_step: float = DEFAULT_GRID_STEP,
                    valid: Optional[ArrayLike] = None) -> np.ndarray:
  """Per-AU thresholds from `threshold_grid(grid_step)` maximising F1 on the given data.

  Ties (including an AU with no positive label, where every threshold scores 0) go to the
  threshold closest to 0.5, then to the lower of two equally close ones.

  Args:
    probs, labels, valid: as `confusion_counts`.
    grid_step: step of the threshold grid.

  Returns:
    (T,) float64 thresholds.
  """
  return _best_thresholds(f1_on_grid(probs, labels, grid_step, valid),
                          threshold_grid(grid_step))


def tune_smoothing(probs: ArrayLike,
                   labels: ArrayLike,
                   video_ids: ArrayLike,
                   windows: Sequence[int] = DEFAULT_WINDOWS,
                   grid_step: float = DEFAULT_GRID_STEP,
                   face_valid: Optional[ArrayLike] = None) -> tuple[int, np.ndarray]:
  """The smoothing window and per-AU thresholds with the best mean F1 on the given data.

  For each window, probabilities are smoothed (`smooth`) and thresholds tuned
  (`tune_thresholds`); the window whose tuned mean F1 is highest wins, ties going to the
  smallest window. Every row is scored; ``face_valid`` only masks the moving means.

  Args:
    probs: (N, T) probabilities of the TUNING data, rows sorted by (video, frame).
    labels: (N, T) in {-1, 0, 1}.
    video_ids: (N,) video of each row.
    windows: candidate windows (frames).
    grid_step: step of the threshold grid.
    face_valid: optional (N,) bool, False for faceless frames.

  Returns:
    (best window, its (T,) thresholds).
  """
  if not windows:
    raise ValueError("windows must hold at least one window")
  grid = threshold_grid(grid_step)
  best = None
  for window in sorted(set(int(w) for w in windows)):  # a handful of windows
    f1 = f1_on_grid(smooth(probs, video_ids, window, face_valid), labels, grid_step)
    thresholds = _best_thresholds(f1, grid)
    score = float(f1.max(axis=1).mean())
    if best is None or score > best[0]:
      best = (score, window, thresholds)
  return best[1], best[2]


# ----------------------------------------------------------------------------- the report


def _fingerprint(labels, video_ids) -> str:
  """A digest of a split's identity (its labels and video ids, not a model's outputs)."""
  h = hashlib.blake2b(digest_size=16)
  for a in (labels, video_ids):
    a = np.asarray(a)
    if a.dtype == object:
      a = a.astype(str)
    a = np.ascontiguousarray(a)
    h.update(f"{a.shape}{a.dtype}".encode())
    h.update(memoryview(a).cast("B"))
  return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class Tuning:
  """What tuning chose, and on which data.

  Attributes:
    thresholds_raw: (T,) thresholds tuned on the raw probabilities.
    window: the smoothing window tuned jointly with ``thresholds_smoothed``.
    thresholds_smoothed: (T,) thresholds tuned on probabilities smoothed with ``window``.
    tuned_on: name of the tuning split.
    fingerprint: digest of the tuning split's labels and video ids, or None.
  """
  thresholds_raw: np.ndarray
  window: int
  thresholds_smoothed: np.ndarray
  tuned_on: str
  fingerprint: Optional[str] = None


def tune_split(probs: ArrayLike,
               labels: ArrayLike,
               video_ids: ArrayLike,
               *,
               tuned_on: str,
               windows: Sequence[int] = DEFAULT_WINDOWS,
               grid_step: float = DEFAULT_GRID_STEP,
               face_valid: Optional[ArrayLike] = None) -> Tuning:
  """Thresholds for raw probabilities, and window + thresholds for smoothed ones.

  Args: the tuning split's arrays and its name; the rest as `tune_smoothing`.
  """
  probs, labels = np.asarray(probs), np.asarray(labels)
  window, thresholds_smoothed = tune_smoothing(probs, labels, video_ids, windows, grid_step,
                                               face_valid)
  return Tuning(thresholds_raw=tune_thresholds(probs, labels, grid_step),
                window=window,
                thresholds_smoothed=thresholds_smoothed,
                tuned_on=tuned_on,
                fingerprint=_fingerprint(labels, video_ids))


def _refuse_self_tuning(split: str, tuned_on: str, labels, video_ids, tune_arrays=None,
                        fingerprint=None):
  """Raise ValueError when the tuning data is the reported split itself.

  A split is known by its name, and by its labels and video ids: tuning on the reported
  split's frames with another model's probabilities is caught too.
  """
  if not tuned_on:
    raise ValueError("tuned_on must name the split the thresholds were tuned on")
  if tuned_on == split:
    raise ValueError(f"refusing to tune on the reported split {split!r}: tuning thresholds "
                     "and window on the set you report flatters its F1 (RECIPE "
                     "'Evaluation'); tune on a held-out split")
  if tune_arrays is not None:
    labels_t, video_ids_t = tune_arrays
    if labels_t is labels or (np.shape(labels_t) == np.shape(labels) and
                              np.array_equal(labels_t, labels) and
                              np.array_equal(video_ids_t, video_ids)):
      raise ValueError(f"refusing to report {split!r} with thresholds tuned on identical "
                       f"labels and videos (named {tuned_on!r}): tune on a held-out split")
  if fingerprint is not None and fingerprint == _fingerprint(labels, video_ids):
    raise ValueError(f"refusing to report {split!r}: the tuning split {tuned_on!r} has its "
                     "labels and videos (same fingerprint); tune on a held-out split")


def _scored(probs, labels, thresholds, au_names) -> dict[str, Any]:
  per_au, mean = f1_scores(probs, labels, thresholds)
  return {"per_au": dict(zip(au_names, (float(f) for f in per_au))), "mean": mean}


def evaluation_report(probs: ArrayLike,
                      labels: ArrayLike,
                      video_ids: ArrayLike,
                      *,
                      au_names: Sequence[str],
                      window: int,
                      split: str,
                      tune: Optional[tuple] = None,
                      tuned_on: Optional[str] = None,
                      tuning: Optional[Tuning] = None,
                      windows: Sequence[int] = DEFAULT_WINDOWS,
                      grid_step: float = DEFAULT_GRID_STEP,
                      threshold: float = DEFAULT_THRESHOLD,
                      face_valid: Optional[ArrayLike] = None) -> dict[str, Any]:
  """The reported split scored four ways, with thresholds tuned elsewhere.

  Scorings (each per-AU F1 and mean): ``fixed_raw`` (threshold 0.5), ``fixed_smoothed`` (0.5
  after smoothing with ``window``), ``tuned_raw`` (tuned thresholds) and ``tuned_smoothed``
  (tuned thresholds after smoothing with the tuned window).

  Args:
    probs: (N, T) probabilities of the reported split, rows sorted by (video, frame).
    labels: (N, T) in {-1, 0, 1}.
    video_ids: (N,) video of each row.
    au_names: T AU names, e.g. ``aus.names(aus.AFFWILD2)``.
    window: the fixed smoothing window (config ``eval.smoothing_window``).
    split: name of the reported split.
    tune: the tuning split as (probs, labels, video_ids) or (probs, labels, video_ids,
      face_valid); tuned here over ``windows`` and ``grid_step``. Needs ``tuned_on``.
    tuned_on: name of the tuning split (with ``tune``).
    tuning: alternatively, a precomputed `Tuning` (from `tune_split`).
    windows, grid_step: the tuning search (with ``tune``).
    threshold: the fixed threshold.
    face_valid: optional (N,) bool of the reported split, False for faceless frames.

  Returns:
    A JSON-serialisable dict: split, tuned_on, au_names, num_frames, num_videos, windows,
    thresholds and, under "scores", the four scorings.

  Raises:
    ValueError: if the tuning data is the reported split (same name, or identical labels and
      video ids), or unless exactly one of ``tune`` / ``tuning`` is given.
  """
  probs, labels = np.asarray(probs), np.asarray(labels)
  au_names = list(au_names)
  if len(au_names) != probs.shape[1]:
    raise ValueError(f"{len(au_names)} AU names for {probs.shape[1]} AUs")
  if (tune is None) == (tuning is None):
    raise ValueError("give exactly one of tune=(probs, labels, video_ids) with tuned_on, "
                     "or tuning=Tuning(...)")
  if tune is not None:
    if len(tune) not in (3, 4):
      raise ValueError("tune must be (probs, labels, video_ids[, face_valid])")
    _refuse_self_tuning(split, tuned_on, labels, video_ids, tune_arrays=tune[1:3])
    tuning = tune_split(*tune[:3], tuned_on=tuned_on, windows=windows, grid_step=grid_step,
                        face_valid=tune[3] if len(tune) == 4 else None)
  else:
    if tuned_on is not None and tuned_on != tuning.tuned_on:
      raise ValueError(f"tuned_on={tuned_on!r} but tuning.tuned_on={tuning.tuned_on!r}")
    _refuse_self_tuning(split, tuning.tuned_on, labels, video_ids,
                        fingerprint=tuning.fingerprint)

  smoothed_fixed = smooth(probs, video_ids, window, face_valid)
  smoothed_tuned = (smoothed_fixed if tuning.window == window else
                    smooth(probs, video_ids, tuning.window, face_valid))
  scores = {
      "fixed_raw": _scored(probs, labels, threshold, au_names),
      "fixed_smoothed": _scored(smoothed_fixed, labels, threshold, au_names),
      "tuned_raw": _scored(probs, labels, tuning.thresholds_raw, au_names),
      "tuned_smoothed": _scored(smoothed_tuned, labels, tuning.thresholds_smoothed,
                                au_names),
  }
  return {
      "split": split,
      "tuned_on": tuning.tuned_on,
      "au_names": au_names,
      "num_frames": int(probs.shape[0]),
      "num_videos": int(np.unique(np.asarray(video_ids)).size),
      "threshold_fixed": float(threshold),
      "window_fixed": int(window),
      "window_tuned": int(tuning.window),
      "thresholds_tuned_raw": dict(zip(au_names, map(float, tuning.thresholds_raw))),
      "thresholds_tuned_smoothed": dict(zip(au_names,
                                            map(float, tuning.thresholds_smoothed))),
      "scores": scores,
  }


def write_report(report: dict[str, Any], out_dir: Union[str, pathlib.Path]) -> None:
  """Write ``report.json`` and ``per_au_f1.csv`` (one row per AU, then the mean) in out_dir."""
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
  header = ["au", *_SCORINGS, "threshold_tuned_raw", "threshold_tuned_smoothed"]
  lines = [",".join(header)]
  for au in report["au_names"]:
    row = [report["scores"][s]["per_au"][au] for s in _SCORINGS]
    row += [report["thresholds_tuned_raw"][au], report["thresholds_tuned_smoothed"][au]]
    lines.append(",".join([au, *(f"{v:.6f}" for v in row)]))
  means = [f"{report['scores'][s]['mean']:.6f}" for s in _SCORINGS]
  lines.append(",".join(["mean", *means, "", ""]))
  (out_dir / "per_au_f1.csv").write_text("\n".join(lines) + "\n")


def plot_report(report: dict[str, Any], path: Union[str, pathlib.Path]) -> None:
  """A PNG grouped bar chart of per-AU F1 (and the mean), one bar per scoring."""
  # Figure without pyplot: no global backend state, renders with Agg in any process.
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  groups = [*report["au_names"], "mean"]
  x = np.arange(len(groups))
  width = 0.8 / len(_SCORINGS)
  labels = {
      "fixed_raw": f"fixed {report['threshold_fixed']:g}",
      "fixed_smoothed": f"fixed {report['threshold_fixed']:g}, "
                        f"smoothed w={report['window_fixed']}",
      "tuned_raw": f"tuned on {report['tuned_on']}",
      "tuned_smoothed": f"tuned on {report['tuned_on']}, "
                        f"smoothed w={report['window_tuned']}",
  }
  fig = Figure(figsize=(max(6.0, 0.75 * len(groups)), 4.5), layout="constrained")
  ax = fig.add_subplot()
  for k, s in enumerate(_SCORINGS):
    scores = report["scores"][s]
    values = [scores["per_au"][au] for au in report["au_names"]] + [scores["mean"]]
    ax.bar(x + (k - (len(_SCORINGS) - 1) / 2) * width, values, width,
           label=f"{labels[s]} (mean {scores['mean']:.3f})")
  ax.set_xticks(x, groups)
  ax.set_ylim(0, 1)
  ax.set_ylabel("F1")
  ax.set_title(f"Per-AU F1 on {report['split']} ({report['num_frames']} frames, "
               f"{report['num_videos']} videos)")
  ax.grid(axis="y", alpha=0.3)
  # Below the axes: inside, it would hide the bars of the first AUs.
  fig.legend(fontsize="small", loc="outside lower center", ncols=2)
  fig.savefig(path, dpi=120)
