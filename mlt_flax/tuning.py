"""Per-AU thresholds and the smoothing window, tuned on a grid to maximise the ABAW3 F1.

docs/recipe.md, "## Evaluation (ABAW3 AU track)": thresholds on a 0.005 grid (0.005, ...,
0.995) and a smoothing window of 5-25 frames, tuned on data that is NOT the reported split
(`mlt_flax.reports.evaluation_report` refuses that). The metric and the smoothing are
`mlt_flax.metrics`.

  threshold_grid(step)             the thresholds tried
  f1_on_grid(probs, labels, step)  per-AU F1 at every grid threshold, (T, G), in one pass
  tune_thresholds(...)             per-AU thresholds with the best F1 (ties: nearest 0.5)
  tune_smoothing(...)              the window and its thresholds with the best mean F1
  tune_split(...) -> Tuning        both, for raw and smoothed probabilities, with the tuning
                                   split's name and fingerprint

Everything is vectorised over frames, AUs and grid thresholds: a whole split (about a million
frames) is tuned in well under a second per window.
"""

import dataclasses
import hashlib
from typing import Optional, Sequence

import numpy as np

from mlt_flax import metrics
from mlt_flax.metrics import ArrayLike

# Grid values are rounded to this many decimals so that 0.5 is on the grid exactly.
_GRID_DECIMALS = 12


def threshold_grid(grid_step: float = metrics.DEFAULT_GRID_STEP) -> np.ndarray:
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
               grid_step: float = metrics.DEFAULT_GRID_STEP,
               valid: Optional[ArrayLike] = None) -> np.ndarray:
  """Per-AU F1 at every threshold of `threshold_grid(grid_step)`, (T, G) float64, in one pass.

  Each probability is binned once by how many grid thresholds it reaches, the bins are
  counted per AU and label (bincount), and a reversed cumulative sum gives, for every
  threshold at once, how many positives and negatives are predicted positive.

  Args:
    probs, labels, valid: as `metrics.confusion_counts`.
    grid_step: step of the threshold grid.
  """
  probs, labels, valid = metrics.check_scoring_inputs(probs, labels, valid)
  grid = threshold_grid(grid_step)
  num_aus, num_bins = probs.shape[1], grid.size + 1
  hist = np.zeros((3, num_aus, num_bins), np.int64)
  for block in metrics.row_blocks(probs.shape[0]):
    hist += _block_grid_histogram(probs[block], labels[block], grid, grid_step,
                                  None if valid is None else valid[block])
  neg_hist, pos_hist = hist[1], hist[2]
  # Predicted positive at threshold g: the rows in bins g + 1, ..., G.
  tp = np.cumsum(pos_hist[:, ::-1], axis=1)[:, ::-1][:, 1:]
  fp = np.cumsum(neg_hist[:, ::-1], axis=1)[:, ::-1][:, 1:]
  fn = pos_hist.sum(1, keepdims=True) - tp
  return metrics.f1_from_counts(tp, fp, fn)


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
  distance = np.round(np.abs(grid - metrics.DEFAULT_THRESHOLD), _GRID_DECIMALS)
  order = np.lexsort((grid, distance))  # preference order: nearest 0.5 first
  ranked = f1[:, order]
  # F1 values are exact ratios of integers, so equal scores compare equal.
  first_best = np.argmax(ranked == ranked.max(axis=1, keepdims=True), axis=1)
  return grid[order[first_best]]


def tune_thresholds(probs: ArrayLike,
                    labels: ArrayLike,
                    grid_step: float = metrics.DEFAULT_GRID_STEP,
                    valid: Optional[ArrayLike] = None) -> np.ndarray:
  """Per-AU thresholds from `threshold_grid(grid_step)` maximising F1 on the given data.

  Ties (including an AU with no positive label, where every threshold scores 0) go to the
  threshold closest to 0.5, then to the lower of two equally close ones.

  Args:
    probs, labels, valid: as `metrics.confusion_counts`.
    grid_step: step of the threshold grid.

  Returns:
    (T,) float64 thresholds.
  """
  return _best_thresholds(f1_on_grid(probs, labels, grid_step, valid),
                          threshold_grid(grid_step))


def tune_smoothing(probs: ArrayLike,
                   labels: ArrayLike,
                   video_ids: ArrayLike,
                   windows: Sequence[int] = metrics.DEFAULT_WINDOWS,
                   grid_step: float = metrics.DEFAULT_GRID_STEP,
                   face_valid: Optional[ArrayLike] = None,
                   frames: Optional[ArrayLike] = None) -> tuple[int, np.ndarray]:
  """The smoothing window and per-AU thresholds with the best mean F1 on the given data.

  For each window, probabilities are smoothed (`metrics.smooth`) and thresholds tuned
  (`tune_thresholds`); the window whose tuned mean F1 is highest wins, ties going to the
  smallest window. Every row is scored; ``face_valid`` only masks the moving means.

  Args:
    probs: (N, T) probabilities of the TUNING data, rows sorted by (video, frame).
    labels: (N, T) in {-1, 0, 1}.
    video_ids: (N,) video of each row.
    windows: candidate windows (frames).
    grid_step: step of the threshold grid.
    face_valid: optional (N,) bool, False for faceless frames.
    frames: optional (N,) frame numbers: windows span frame numbers (`metrics.smooth`).

  Returns:
    (best window, its (T,) thresholds).
  """
  if not windows:
    raise ValueError("windows must hold at least one window")
  grid = threshold_grid(grid_step)
  best = None
  for window in sorted(set(int(w) for w in windows)):  # a handful of windows
    f1 = f1_on_grid(metrics.smooth(probs, video_ids, window, face_valid, frames=frames),
                    labels, grid_step)
    thresholds = _best_thresholds(f1, grid)
    score = float(f1.max(axis=1).mean())
    if best is None or score > best[0]:
      best = (score, window, thresholds)
  return best[1], best[2]


def split_fingerprint(labels, video_ids) -> str:
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
               windows: Sequence[int] = metrics.DEFAULT_WINDOWS,
               grid_step: float = metrics.DEFAULT_GRID_STEP,
               face_valid: Optional[ArrayLike] = None,
               frames: Optional[ArrayLike] = None) -> Tuning:
  """Thresholds for raw probabilities, and window + thresholds for smoothed ones.

  Args: the tuning split's arrays and its name; the rest as `tune_smoothing`.
  """
  probs, labels = np.asarray(probs), np.asarray(labels)
  window, thresholds_smoothed = tune_smoothing(probs, labels, video_ids, windows, grid_step,
                                               face_valid, frames)
  return Tuning(thresholds_raw=tune_thresholds(probs, labels, grid_step),
                window=window,
                thresholds_smoothed=thresholds_smoothed,
                tuned_on=tuned_on,
                fingerprint=split_fingerprint(labels, video_ids))
