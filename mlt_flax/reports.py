"""A split scored four ways with thresholds tuned elsewhere, written as report.json and a CSV.

docs/recipe.md, "## Evaluation (ABAW3 AU track)": the reported split is scored at the fixed
threshold 0.5 and with thresholds (and a smoothing window) tuned on another split, raw and
smoothed. Tuning on the reported split itself flatters its F1, so `evaluation_report` refuses
it (by name and by the split's labels and video ids). The figure of a report is
`mlt_flax.plots.plot_report`.

  evaluation_report(...) -> dict   the four scorings, thresholds, windows, split names
  write_report(report, out_dir)    report.json and per_au_f1.csv
"""

import json
import pathlib
from typing import Any, Optional, Sequence, Union

import numpy as np

from mlt_flax import metrics
from mlt_flax import tuning as tuning_lib
from mlt_flax.metrics import ArrayLike

# Where `evaluate` writes its report by default, under the run's workdir.
REPORT = pathlib.Path("eval_validation") / "report.json"

# The four scorings of a report, in the order of its CSV columns and figure bars.
SCORINGS = ("fixed_raw", "fixed_smoothed", "tuned_raw", "tuned_smoothed")


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
                     "and window on the set you report flatters its F1 (docs/recipe.md, "
                     "'## Evaluation (ABAW3 AU track)'); tune on a held-out split")
  if tune_arrays is not None:
    labels_t, video_ids_t = tune_arrays
    if labels_t is labels or (np.shape(labels_t) == np.shape(labels) and
                              np.array_equal(labels_t, labels) and
                              np.array_equal(video_ids_t, video_ids)):
      raise ValueError(f"refusing to report {split!r} with thresholds tuned on identical "
                       f"labels and videos (named {tuned_on!r}): tune on a held-out split")
  if fingerprint is not None and fingerprint == tuning_lib.split_fingerprint(labels, video_ids):
    raise ValueError(f"refusing to report {split!r}: the tuning split {tuned_on!r} has its "
                     "labels and videos (same fingerprint); tune on a held-out split")


def scored(probs, labels, thresholds, au_names) -> dict[str, Any]:
  """{'per_au': {AU: F1}, 'mean': mean F1} of probs at thresholds (one, or one per AU)."""
  per_au, mean = metrics.f1_scores(probs, labels, thresholds)
  return {"per_au": dict(zip(au_names, (float(f) for f in per_au))), "mean": float(mean)}


def evaluation_report(probs: ArrayLike,
                      labels: ArrayLike,
                      video_ids: ArrayLike,
                      *,
                      au_names: Sequence[str],
                      window: int,
                      split: str,
                      tune: Optional[tuple] = None,
                      tuned_on: Optional[str] = None,
                      tuning: Optional[tuning_lib.Tuning] = None,
                      windows: Sequence[int] = metrics.DEFAULT_WINDOWS,
                      grid_step: float = metrics.DEFAULT_GRID_STEP,
                      threshold: float = metrics.DEFAULT_THRESHOLD,
                      face_valid: Optional[ArrayLike] = None,
                      frames: Optional[ArrayLike] = None) -> dict[str, Any]:
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
    tuning: alternatively, a precomputed `tuning.Tuning` (from `tuning.tune_split`).
    windows, grid_step: the tuning search (with ``tune``).
    threshold: the fixed threshold.
    face_valid: optional (N,) bool of the reported split, False for faceless frames.
    frames: optional (N,) frame numbers of the reported split: smoothing windows span frame
      numbers (`metrics.smooth`), which matters where rows skip frames.

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
    tuning = tuning_lib.tune_split(*tune[:3], tuned_on=tuned_on, windows=windows,
                                   grid_step=grid_step,
                                   face_valid=tune[3] if len(tune) == 4 else None)
  else:
    if tuned_on is not None and tuned_on != tuning.tuned_on:
      raise ValueError(f"tuned_on={tuned_on!r} but tuning.tuned_on={tuning.tuned_on!r}")
    _refuse_self_tuning(split, tuning.tuned_on, labels, video_ids,
                        fingerprint=tuning.fingerprint)

  smoothed_fixed = metrics.smooth(probs, video_ids, window, face_valid, frames=frames)
  smoothed_tuned = (smoothed_fixed if tuning.window == window else
                    metrics.smooth(probs, video_ids, tuning.window, face_valid, frames=frames))
  scores = {
      "fixed_raw": scored(probs, labels, threshold, au_names),
      "fixed_smoothed": scored(smoothed_fixed, labels, threshold, au_names),
      "tuned_raw": scored(probs, labels, tuning.thresholds_raw, au_names),
      "tuned_smoothed": scored(smoothed_tuned, labels, tuning.thresholds_smoothed,
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
  header = ["au", *SCORINGS, "threshold_tuned_raw", "threshold_tuned_smoothed"]
  lines = [",".join(header)]
  for au in report["au_names"]:
    row = [report["scores"][s]["per_au"][au] for s in SCORINGS]
    row += [report["thresholds_tuned_raw"][au], report["thresholds_tuned_smoothed"][au]]
    lines.append(",".join([au, *(f"{v:.6f}" for v in row)]))
  means = [f"{report['scores'][s]['mean']:.6f}" for s in SCORINGS]
  lines.append(",".join(["mean", *means, "", ""]))
  (out_dir / "per_au_f1.csv").write_text("\n".join(lines) + "\n")


def read_shipped(workdir) -> tuple[Optional[dict], pathlib.Path]:
  """(the set `evaluate` says to ship, verbatim, or None without a report; the report's path)
  from <workdir>/REPORT: {'thresholds': {AU: t}, 'window': int, 'checkpoint_step': int, ...}.

  Raises ValueError, starting with the path, for a file that is not an evaluation report
  with a shipped set (e.g. one written before reports had one).
  """
  path = pathlib.Path(workdir) / REPORT
  if not path.is_file():
    return None, path
  try:
    shipped = json.loads(path.read_text())["shipped"]
    int(shipped["checkpoint_step"])
  except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
    raise ValueError(f"{path}: not an evaluation report with a shipped set of thresholds "
                     f"({type(e).__name__}: {e}); run mlt_flax.evaluate again") from e
  return shipped, path
