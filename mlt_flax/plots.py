"""Pictures people want to look at: per-AU attention heatmaps and AU timelines (matplotlib).

Figures are drawn with `matplotlib.figure.Figure` (the Agg canvas), never pyplot: no global
backend state, safe in any process.
"""

import pathlib
from typing import Sequence

import numpy as np


def attention_heatmaps(face: np.ndarray, attention: np.ndarray, probs: np.ndarray,
                       au_names: Sequence[str], path, title: str = "") -> None:
  """One panel per AU: where its label token looks on the face, and its probability.

  face: (H, W, 3) uint8 crop; attention: (L, h, w) cross-attention weights of each label
  token over the patch grid (e.g. the last decoder layer, averaged over heads); probs: (L,).
  """
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  num = len(au_names)
  cols = min(num, 6)
  rows = -(-num // cols)
  fig = Figure(figsize=(2.0 * cols, 2.2 * rows), layout="constrained")
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
  if title:
    fig.suptitle(title, fontsize=10)
  fig.savefig(pathlib.Path(path), dpi=100)


def au_timeline(frames: np.ndarray, probs: np.ndarray, face_found: np.ndarray,
                au_names: Sequence[str], path, thresholds=0.5, title: str = "") -> None:
  """One row per AU: probability over the video's frames, threshold, faceless frames shaded.

  frames: (N,) 1-based frame numbers; probs: (N, L); face_found: (N,) bool.
  """
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  num = len(au_names)
  thresholds = np.broadcast_to(np.asarray(thresholds, float), (num,))
  fig = Figure(figsize=(10, 0.55 * num + 1.2), layout="constrained")
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
  if title:
    fig.suptitle(title, fontsize=10)
  fig.savefig(pathlib.Path(path), dpi=100)
