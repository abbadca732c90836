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
                                   split's name, fingerprint and scores; Tuning.shipped() is
                                   the one set (window, thresholds) a user should ship

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
  # Every k with k * step < 1; 1 / step is rounded first, so that a step dividing 1 (0.005:
  # 200.00000000000003 in floating point) never lets 1.0 itself in.
  num = int(np.ceil(round(1.0 / grid_step, _GRID_DECIMALS))) - 1
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
  _, window, thresholds = _tune_smoothing_scored(probs, labels, video_ids, windows, grid_step,
                                                 face_valid, frames)
  return window, thresholds


def _tune_smoothing_scored(probs, labels, video_ids, windows, grid_step, face_valid, frames):
  """`tune_smoothing`, with the winning window's mean F1 on the tuning data first."""
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
  return best


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
    score_raw, score_smoothed: the tuning data's mean F1 with ``thresholds_raw`` (raw) and
      with ``window`` + ``thresholds_smoothed``, or None when not known.
  """
  thresholds_raw: np.ndarray
  window: int
  thresholds_smoothed: np.ndarray
  tuned_on: str
  fingerprint: Optional[str] = None
  score_raw: Optional[float] = None
  score_smoothed: Optional[float] = None

  def shipped(self) -> tuple[int, np.ndarray]:
    """The set a user should ship: (window, thresholds), window 1 meaning no smoothing.

    Of the two tuned sets, the one with the higher mean F1 on the tuning data (never on the
    frames a report scores); a tie keeps the simpler one, no smoothing.
    """
    if self.score_raw is None or self.score_smoothed is None:
      raise ValueError(f"tuning on {self.tuned_on!r} carries no tuning-data scores: tune it "
                       "with tuning.tune_split")
    if self.score_smoothed > self.score_raw:
      return int(self.window), self.thresholds_smoothed
    return 1, self.thresholds_raw


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
  score_smoothed, window, thresholds_smoothed = _tune_smoothing_scored(
      probs, labels, video_ids, windows, grid_step, face_valid, frames)
  f1_raw = f1_on_grid(probs, labels, grid_step)
  return Tuning(thresholds_raw=_best_thresholds(f1_raw, threshold_grid(grid_step)),
                window=window,
                thresholds_smoothed=thresholds_smoothed,
                tuned_on=tuned_on,
                fingerprint=split_fingerprint(labels, video_ids),
                score_raw=float(f1_raw.max(axis=1).mean()),
                score_smoothed=score_smoothed)


# The authors' evaluation (gtallec/DL_ISIR_ABAW3, src/abaw3_utils.py), for comparison only: it
# tunes on the frames it scores (docs/recipe.md, "The paper's protocol").
PAPER_F1_EPS = 1e-7  # their guards in precision, recall and F1
PAPER_SMOOTHING_EPS = 1e-7  # their guard on the moving mean's denominator


def paper_smooth(probs: ArrayLike, video_ids: ArrayLike, frames: ArrayLike, face: ArrayLike,
                 window: int) -> np.ndarray:
  """The authors' moving mean: a 'SAME' convolution per video, faceless rows masked in the
  denominator only.

  Row at frame f of a video gets sum(p over its video's rows with frame in [f - (w - 1) // 2,
  f + w // 2]) / (number of those rows with a face crop + 1e-7): every row's prediction,
  faceless ones included, enters the sum (their padding rows are predicted too), while only
  face rows are counted; even windows reach one frame further forward than back (TF's
  'SAME' padding: window 20 is 9 back, 10 forward). Rows sorted by (video, frame).
  """
  probs = np.asarray(probs, np.float64)
  frames = np.asarray(frames, np.int64)
  face = np.asarray(face, bool)
  _, codes = np.unique(np.asarray(video_ids), return_inverse=True)
  span = int(frames.max() - frames.min()) + 2 * int(window) + 2 if len(frames) else 1
  key = codes.astype(np.int64) * span + (frames - (frames.min() if len(frames) else 0))
  if np.any(np.diff(key) <= 0):
    raise ValueError("rows must be sorted by (video, frame), each frame once")
  back, forward = (window - 1) // 2, window // 2
  lo = np.searchsorted(key, key - back, side="left")
  hi = np.searchsorted(key, key + forward, side="right")
  total = np.concatenate([np.zeros((1, probs.shape[1])), np.cumsum(probs, axis=0)])
  count = np.concatenate([[0], np.cumsum(face)])
  return (total[hi] - total[lo]) / (count[hi] - count[lo] + PAPER_SMOOTHING_EPS)[:, None]


def paper_f1_on_grid(values: np.ndarray, labels: np.ndarray, grid: np.ndarray) -> np.ndarray:
  """Per-AU F1 (T, G) with the authors' guards, a frame positive when value >= threshold;
  entries labelled -1 are left out."""
  f1 = np.zeros((values.shape[1], len(grid)))
  eps = PAPER_F1_EPS
  for t in range(values.shape[1]):  # a dozen AUs; frames and thresholds vectorised
    pos = np.sort(values[labels[:, t] == 1, t])
    neg = np.sort(values[labels[:, t] == 0, t])
    tp = len(pos) - np.searchsorted(pos, grid, side="left")
    fp = len(neg) - np.searchsorted(neg, grid, side="left")
    fn = len(pos) - tp
    precision = (tp + eps) / (tp + fp + eps)
    recall = (tp + eps) / (tp + fn + eps)
    f1[t] = 2 * precision * recall / (precision + recall + eps)
  return f1


def paper_protocol(probs: ArrayLike, labels: ArrayLike, video_ids: ArrayLike,
                   frames: ArrayLike, face: ArrayLike, *, windows: Sequence[int],
                   num_thresholds: int) -> dict:
  """The authors' figure: window and per-AU thresholds tuned on the very frames scored.

  Thresholds np.linspace(0, 1, num_thresholds) (theirs: 200), the first best per AU; windows
  in the order given (theirs: 5, 10, 15, 20, 25), the first best mean F1; smoothing
  `paper_smooth`; F1 `paper_f1_on_grid`. probs are the raw outputs, faceless rows holding
  the model's output on their placeholder frame (not filled from a neighbour).

  Returns {'window', 'thresholds' (T,), 'per_au' (T,), 'mean'}.
  """
  probs, labels = np.asarray(probs), np.asarray(labels)
  if num_thresholds < 2 or not windows:
    raise ValueError(f"num_thresholds={num_thresholds}, windows={list(windows)}: expected at "
                     "least 2 thresholds and one window")
  grid = np.linspace(0.0, 1.0, int(num_thresholds))
  best = None
  for window in windows:
    f1 = paper_f1_on_grid(paper_smooth(probs, video_ids, frames, face, int(window)), labels,
                          grid)
    index = np.argmax(f1, axis=1)
    per_au = f1[np.arange(len(f1)), index]
    if best is None or per_au.mean() > best["mean"]:
      best = {"window": int(window), "thresholds": grid[index], "per_au": per_au,
              "mean": float(per_au.mean())}
  return best
