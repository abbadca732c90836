"""Pictures people want to look at: per-AU F1 bars, AU timelines, attention heatmaps (matplotlib).

  plot_report(report, path)        grouped bars of per-AU F1, one bar per scoring (`reports`)
  au_timeline(...)                 one row per AU: probability over a video's frames
  attention_heatmaps(...)          one panel per AU: where its label token looks on the face
  learning_curves(points, path)    mean F1 (validation, training frames) and loss over steps

Figures are drawn with `matplotlib.figure.Figure` (the Agg canvas), never pyplot: no global
backend state, safe in any process. Each function saves a PNG and returns its Figure. Layout is
matplotlib's constrained layout, and free text (titles, legend entries: split names can be a
sentence long) is wrapped to the figure's width, so every label and legend lies inside the
saved image.
"""

import pathlib
import textwrap
from typing import Any, Sequence, Union

import numpy as np

from mlt_flax import reports

_POINTS_PER_INCH = 72
_DEFAULT_FONT_PT = 10.0
_SMALL_FONT_PT = _DEFAULT_FONT_PT / 1.2  # matplotlib's "small"
_LARGE_FONT_PT = _DEFAULT_FONT_PT * 1.2  # matplotlib's "large", the default title size
# Room a legend entry needs besides its text: handle, padding and column spacing (in em).
_LEGEND_ENTRY_EM = 6.0
# Constrained layout's padding around the figure's contents, both sides together (points).
_LAYOUT_PAD_PT = 12.0
_REPORT_HEIGHT_IN = 4.5
# The report's y tick labels and axis label, left of its axes (the axes title is centred on
# the axes, not on the figure).
_REPORT_Y_LABELS_IN = 1.0
_LINE_HEIGHT_IN = 0.2  # one more wrapped line of title or small legend text


def _figure(width: float, height: float):
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  return Figure(figsize=(width, height), layout="constrained")


def _save(fig, path, dpi: int):
  fig.savefig(pathlib.Path(path), dpi=dpi)
  return fig


def _wrap(text: str, width_in: float, font_pt: float = _DEFAULT_FONT_PT,
          extra_em: float = 0.0) -> str:
  """``text`` wrapped into lines that fit ``width_in`` inches at ``font_pt`` points, less
  ``extra_em`` ems of room for something beside the text (a legend handle).

  Lines are measured as the Agg renderer draws them (matplotlib's default font), at 72 dpi,
  where a pixel is a point.
  """
  # pylint: disable=g-import-not-at-top
  from matplotlib.backends.backend_agg import RendererAgg
  from matplotlib.font_manager import FontProperties
  renderer, font = RendererAgg(1, 1, _POINTS_PER_INCH), FontProperties(size=font_pt)
  room = width_in * _POINTS_PER_INCH - extra_em * font_pt - _LAYOUT_PAD_PT
  fits = lambda line: renderer.get_text_width_height_descent(line, font, ismath=False)[0] <= room
  chars = len(text)
  lines = [text]
  while chars > 1 and not all(map(fits, lines)):
    chars -= 1
    lines = textwrap.wrap(text, chars)
  return "\n".join(lines)


def _suptitle(fig, title: str, width_in: float, font_pt: float) -> None:
  if title:
    fig.suptitle(_wrap(title, width_in, font_pt), fontsize=font_pt)


def _windows(window) -> str:
  """A report's window: one int, or one per cross-video fold (shown as 5/10)."""
  return "/".join(map(str, window)) if isinstance(window, (list, tuple)) else str(window)


def plot_report(report: dict[str, Any], path: Union[str, pathlib.Path]):
  """A PNG grouped bar chart of per-AU F1 (and the mean), one bar per scoring.

  report: as `reports.evaluation_report` returns it. The split the thresholds were tuned on is
  named in the title (it may be a sentence, as in cross-video tuning); the legend, below the
  axes where it hides no bar, names each scoring and its mean F1.
  """
  groups = [*report["au_names"], "mean"]
  x = np.arange(len(groups))
  num = len(reports.SCORINGS)
  width = 0.8 / num
  fixed = f"fixed {report['threshold_fixed']:g}"
  labels = {
      "fixed_raw": fixed,
      "fixed_smoothed": f"{fixed}, smoothed w={_windows(report['window_fixed'])}",
      "tuned_raw": "tuned",
      "tuned_smoothed": f"tuned, smoothed w={_windows(report['window_tuned'])}",
  }
  fig_width = max(6.0, 0.75 * len(groups))
  ncols = 2
  title = _wrap(f"Per-AU F1 on {report['split']} ({report['num_frames']} frames, "
                f"{report['num_videos']} videos)", fig_width, _LARGE_FONT_PT)
  subtitle = _wrap(f"thresholds tuned on {report['tuned_on']}",
                   fig_width - _REPORT_Y_LABELS_IN, _SMALL_FONT_PT)
  entries = {s: _wrap(f"{labels[s]} (mean {report['scores'][s]['mean']:.3f})",
                      fig_width / ncols, _SMALL_FONT_PT, _LEGEND_ENTRY_EM)
             for s in reports.SCORINGS}
  # The axes keep their height however many lines the title and legend wrap into.
  legend_lines = sum(max(entries[s].count("\n") for s in reports.SCORINGS[i:i + ncols])
                     for i in range(0, num, ncols))
  extra_lines = title.count("\n") + subtitle.count("\n") + legend_lines
  fig = _figure(fig_width, _REPORT_HEIGHT_IN + _LINE_HEIGHT_IN * extra_lines)
  ax = fig.add_subplot()
  for k, s in enumerate(reports.SCORINGS):
    scores = report["scores"][s]
    values = [scores["per_au"][au] for au in report["au_names"]] + [scores["mean"]]
    ax.bar(x + (k - (num - 1) / 2) * width, values, width, label=entries[s])
  ax.set_xticks(x, groups)
  ax.set_ylim(0, 1)
  ax.set_ylabel("F1")
  fig.suptitle(title, fontsize=_LARGE_FONT_PT)
  ax.set_title(subtitle, fontsize="small")
  ax.grid(axis="y", alpha=0.3)
  # Below the axes: inside, it would hide the bars of the first AUs.
  fig.legend(fontsize="small", loc="outside lower center", ncols=ncols)
  return _save(fig, path, dpi=120)


def attention_heatmaps(face: np.ndarray, attention: np.ndarray, probs: np.ndarray,
                       au_names: Sequence[str], path, title: str = ""):
  """One panel per AU: where its label token looks on the face, and its probability.

  face: (H, W, 3) uint8 crop; attention: (L, h, w) cross-attention weights of each label
  token over the patch grid (e.g. the last decoder layer, averaged over heads); probs: (L,).
  """
  num = len(au_names)
  cols = min(num, 6)
  rows = -(-num // cols)
  fig = _figure(2.0 * cols, 2.2 * rows)
  h, w = face.shape[:2]
  for i, name in enumerate(au_names):
    ax = fig.add_subplot(rows, cols, i + 1)
    ax.imshow(face)
    # Nearest upsampling keeps the patch grid visible: each square is one token.
    ax.imshow(attention[i], cmap="inferno", alpha=0.55, extent=(0, w, h, 0),
              interpolation="nearest")
    ax.set_title(f"{name}  p={probs[i]:.2f}", fontsize=9,
                 color="tab:red" if probs[i] >= 0.5 else "black")
    ax.set_axis_off()
  _suptitle(fig, title, 2.0 * cols, _DEFAULT_FONT_PT)
  return _save(fig, path, dpi=100)


def au_timeline(frames: np.ndarray, probs: np.ndarray, face_found: np.ndarray,
                au_names: Sequence[str], path, thresholds=0.5, title: str = ""):
  """One row per AU: probability over the video's frames, threshold, faceless frames shaded.

  frames: (N,) 1-based frame numbers; probs: (N, L); face_found: (N,) bool.
  """
  num = len(au_names)
  thresholds = np.broadcast_to(np.asarray(thresholds, float), (num,))
  fig_width = 10.0
  fig = _figure(fig_width, 0.55 * num + 1.2)
  axes = fig.subplots(num, 1, sharex=True, squeeze=False)[:, 0]
  faceless = ~np.asarray(face_found, bool)
  for i, (ax, name) in enumerate(zip(axes, au_names)):
    ax.fill_between(frames, 0, 1, where=faceless, color="0.85", step="mid", linewidth=0)
    ax.plot(frames, probs[:, i], color="tab:blue", linewidth=1)
    ax.fill_between(frames, 0, probs[:, i], where=probs[:, i] >= thresholds[i],
                    color="tab:red", alpha=0.35, linewidth=0)
    ax.axhline(thresholds[i], color="0.4", linewidth=0.5, linestyle="--")
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
  axes[-1].set_xlabel("frame (grey: no face found)")
  _suptitle(fig, title, fig_width, _DEFAULT_FONT_PT)
  return _save(fig, path, dpi=100)


def learning_curves(points: Sequence[dict], path, title: str = ""):
  """Mean F1 per evaluation (validation; training frames where measured) and the training
  loss, over steps (`curves.Curves.points`); a dashed line marks the best evaluation."""
  fig_width = 7.0
  fig = _figure(fig_width, 4.0)
  ax = fig.subplots()
  steps = [p["step"] for p in points]
  ax.plot(steps, [p["val_mean_f1"] for p in points], "o-", color="tab:blue",
          label="validation mean F1")
  trained = [p for p in points if "train_mean_f1" in p]
  if trained:
    ax.plot([p["step"] for p in trained], [p["train_mean_f1"] for p in trained], "s--",
            color="tab:green", label="training frames mean F1")
  if points:
    best = max(points, key=lambda p: p["val_mean_f1"])
    ax.axvline(best["step"], color="0.5", linestyle=":", linewidth=1,
               label=f"best: {best['val_mean_f1']:.3f} at step {best['step']}")
  ax.set_ylim(0, 1)
  ax.set_xlabel("step")
  ax.set_ylabel("mean F1 (threshold 0.5)")
  lossy = [p for p in points if "train_loss" in p]
  handles, labels = ax.get_legend_handles_labels()
  if lossy:
    loss_ax = ax.twinx()
    loss_ax.plot([p["step"] for p in lossy], [p["train_loss"] for p in lossy], "^-",
                 color="tab:red", alpha=0.6, label="training loss")
    loss_ax.set_ylabel("training loss")
    more_handles, more_labels = loss_ax.get_legend_handles_labels()
    handles, labels = handles + more_handles, labels + more_labels
  ax.legend(handles, labels, fontsize=_SMALL_FONT_PT, loc="lower right")
  _suptitle(fig, title, fig_width, _DEFAULT_FONT_PT)
  return _save(fig, path, dpi=100)
