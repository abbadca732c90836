"""The ABAW3 AU-track metric, on the host with numpy: pooled per-AU F1 and in-video smoothing.

docs/recipe.md, "## Evaluation (ABAW3 AU track)". With probabilities p (N, T), labels y (N, T)
in {-1, 0, 1} (-1: not annotated, left out of that AU's counts) and thresholds th (T,):
  pred_{i,t} = p_{i,t} >= th_t
  TP_t, FP_t, FN_t pooled over every scored frame i of the split
  F1_t = 2 TP_t / (2 TP_t + FP_t + FN_t), and F1_t = 0 when the denominator is 0
         (an AU with no positive label and no positive prediction; scikit-learn's
         ``zero_division=0``)
  mean F1 = mean_t F1_t.

Before thresholding, probabilities may be smoothed by a centred moving mean inside each video
(`smooth`). Thresholds and the smoothing window are tuned in `mlt_flax.tuning`, on data that is
NOT the reported split; `mlt_flax.reports` scores a split and refuses self-tuning.

Two masks, with different jobs:
  * ``valid`` in `confusion_counts` / `f1_scores`: rows that are scored (False for padding
    rows, which are not frames at all).
  * ``valid`` in `smooth` (``face_valid`` in tuning and reports): frames whose prediction is
    trusted (False for faceless frames). They are left out of every moving mean but still
    receive a smoothed value, and they are still scored: the challenge scores every labelled
    frame.

Everything is vectorised over frames and AUs: it runs on whole splits (about a million frames)
in well under a second.
"""

import dataclasses
from typing import Iterator, Optional, Sequence, Union

import numpy as np

# The challenge's fixed decision threshold.
DEFAULT_THRESHOLD = 0.5
# Step of the per-AU threshold grid (docs/recipe.md, "## Evaluation (ABAW3 AU track)": 0.005,
# i.e. thresholds 0.005, 0.010, ..., 0.995).
DEFAULT_GRID_STEP = 0.005
# Smoothing windows tried when tuning (docs/recipe.md, same section: 5-25 frames).
DEFAULT_WINDOWS = (5, 10, 15, 20, 25)
# Smoothed value of a frame whose window holds no valid (face) frame: predicted negative.
DEFAULT_EMPTY_VALUE = 0.0
# Rows per block in the scoring passes: small enough for the (rows, T) temporaries to stay in
# cache (about twice as fast as whole-array passes at N = 1e6), large enough to amortise the
# per-block overhead.
_BLOCK_ROWS = 1 << 15

ArrayLike = Union[np.ndarray, Sequence]


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
    per_au = f1_from_counts(self.tp, self.fp, self.fn)
    return per_au, float(per_au.mean()) if per_au.size else 0.0


def f1_from_counts(tp, fp, fn) -> np.ndarray:
  """2 TP / (2 TP + FP + FN) elementwise, 0 where the denominator is 0."""
  num = 2.0 * np.asarray(tp, np.float64)
  den = num + fp + fn
  return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def check_scoring_inputs(probs, labels, valid):
  """Arrays as numpy, shapes and label values checked; returns probs, labels, row mask.

  Shared by every scoring pass here and in `mlt_flax.tuning`.
  """
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


def row_blocks(num_rows: int) -> Iterator[slice]:
  """Slices of at most _BLOCK_ROWS consecutive rows covering [0, num_rows), for the scoring
  passes (see _BLOCK_ROWS); the last one may be shorter."""
  return (slice(i, i + _BLOCK_ROWS) for i in range(0, num_rows, _BLOCK_ROWS))


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
  probs, labels, valid = check_scoring_inputs(probs, labels, valid)
  th = _thresholds_array(thresholds, probs.shape[1])
  # Counts are additive: score block by block and merge.
  counts = Counts.zeros(probs.shape[1])
  for block in row_blocks(probs.shape[0]):
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
    frames: optional (N,) frame numbers, strictly increasing inside each video. Where they
      have gaps (a strided split, frames without a row), the window spans frame numbers:
      row i averages the rows of its video whose frame lies in [f_i - window // 2,
      f_i + (window - 1) // 2].
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
  if frames is not None and np.any((np.diff(np.asarray(frames)) != 1) & (start[1:] == start[:-1])):
    # Frame numbers with gaps (a strided split, missing rows): the window spans frame
    # numbers, not rows. Rows of one video sort by start * span + frame; windows of different
    # videos cannot meet, since span exceeds any frame distance a window reaches.
    frames = np.asarray(frames, np.int64)
    span = int(frames.max() - frames.min()) + window + 2
    key = start.astype(np.int64) * span + frames
    lo = np.searchsorted(key, key - back, "left")
    hi = np.searchsorted(key, key + forward, "right")
  else:
    lo = np.maximum(rows - back, start)
    hi = np.minimum(rows + forward + 1, end)
  # Only rows within half a window of their video's ends (or of a gap) need the clipped
  # window.
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


# ------------------------------------------------------------------ the challenge's protocol


def fill_faceless(probs: ArrayLike, face: ArrayLike, video_ids: Optional[ArrayLike] = None,
                  frames: Optional[ArrayLike] = None) -> np.ndarray:
  """Each frame without a face takes the prediction of the nearest frame with one.

  What a submission holds for a frame the face detector missed (the challenge scores every
  labelled frame): the prediction of the nearest frame of the same video that has a face,
  by frame number (ties to the earlier frame); 0 in a video with no face at all.

  Args:
    probs: (N, T), rows sorted by (video, frame); faceless rows may hold anything.
    face: (N,) bool.
    video_ids: (N,) video of each row (default: one video).
    frames: (N,) frame numbers (default: the row index).
  Returns:
    (N, T) probabilities, equal to `probs` on face rows.
  """
  probs = np.asarray(probs)
  face = np.asarray(face, bool)
  n = len(probs)
  video_ids = np.zeros(n, int) if video_ids is None else video_ids
  start, _ = _video_runs(video_ids, n, frames)
  frames = np.arange(n, dtype=np.int64) if frames is None else np.asarray(frames, np.int64)
  if n == 0:
    return np.zeros(probs.shape, np.float32)
  out = np.zeros(probs.shape, np.result_type(probs.dtype, np.float32))
  out[face] = probs[face]
  if face.all() or not face.any():
    return out
  # Sort key: video, then frame; keys of different videos lie farther apart than any frame
  # distance, so the nearest face key of another video is never nearer than one's own.
  span = 2 * int(frames.max() - frames.min()) + 2
  key = start.astype(np.int64) * span + frames
  face_rows = np.flatnonzero(face)
  pos = np.searchsorted(key[face_rows], key)
  left = face_rows[np.clip(pos - 1, 0, len(face_rows) - 1)]
  right = face_rows[np.clip(pos, 0, len(face_rows) - 1)]
  dist = lambda r: np.where(start[r] == start, np.abs(frames[r] - frames), np.iinfo(np.int64).max)
  nearest = np.where(dist(left) <= dist(right), left, right)
  found = np.minimum(dist(left), dist(right)) < np.iinfo(np.int64).max
  rows = np.flatnonzero(~face & found)
  out[rows] = probs[nearest[rows]]
  return out


def challenge_probs(probs: ArrayLike, face: ArrayLike, video_ids: ArrayLike,
                    frames: ArrayLike, window: int) -> np.ndarray:
  """The probabilities a challenge submission holds for every labelled frame.

  Faceless frames take their nearest face frame's prediction (`fill_faceless`), then every
  frame is smoothed by the centred moving mean over `window` frame numbers within its video
  (`smooth`; window 1: no smoothing). `predict --abaw` writes these; `evaluate` scores them.
  """
  filled = fill_faceless(probs, face, video_ids, frames)
  return smooth(filled, video_ids, window, frames=frames) if window > 1 else filled
