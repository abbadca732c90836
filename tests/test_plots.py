"""Every figure is whole: titles, labels and legends lie inside the saved PNG, for the label
spaces in use (12 and 17 AUs) and for the long split names of cross-video tuning."""

from matplotlib.backends.backend_agg import FigureCanvasAgg
import numpy as np
from PIL import Image
import pytest

from metric_fixtures import random_split
from mlt_flax import aus
from mlt_flax import plots
from mlt_flax import reports

# The tuned_on of a cross-video report (mlt_flax/evaluate.py): a sentence, not a split name.
CROSS_VIDEO = ("cross-video (validation videos in two halves, each scored with thresholds and "
               "window tuned on the other)")
LONG_TITLE = ("a_rather_long_video_name_from_a_phone_camera_2024-06-01_12-30-45: AU probabilities "
              "per frame, every frame of the video")
TOLERANCE_PX = 0.5


def clipped(fig) -> list[str]:
  """What of the drawn figure reaches outside its canvas, one line per artist ([] if none).

  The layout is drawn again, on an Agg canvas (what savefig renders a PNG with) at the
  figure's dpi; constrained layout sizes everything in points, so what fits there fits at the
  dpi the PNG was saved with.
  """
  canvas_agg = FigureCanvasAgg(fig)
  canvas_agg.draw()
  renderer = canvas_agg.get_renderer()
  canvas = fig.bbox
  legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
  boxes = [("all artists", fig.get_tightbbox(renderer).transformed(fig.dpi_scale_trans))]
  boxes += [(f"legend {i}", leg.get_window_extent(renderer)) for i, leg in enumerate(legends)]
  boxes += [(f"axes {i} (title, labels, ticks)", ax.get_tightbbox(renderer))
            for i, ax in enumerate(fig.axes) if ax.get_visible()]
  return [f"{name}: {box.extents.round(1)} outside the canvas {canvas.extents.round(1)}"
          for name, box in boxes if box is not None and (
              box.x0 < canvas.x0 - TOLERANCE_PX or box.y0 < canvas.y0 - TOLERANCE_PX or
              box.x1 > canvas.x1 + TOLERANCE_PX or box.y1 > canvas.y1 + TOLERANCE_PX)]


def inked_border(path) -> bool:
  """Whether the saved PNG has anything but white in its outermost rows and columns (a
  clipped artist runs into the edge; constrained layout keeps a margin)."""
  image = np.asarray(Image.open(path).convert("RGB"))
  border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
  return bool((border < 250).any())


def assert_whole(fig, path):
  assert clipped(fig) == []
  assert not inked_border(path), f"{path.name}: something runs into the image's edge"


def test_the_checks_catch_a_clipped_legend(tmp_path):
  # The old f1.png failure: a figure-level legend below the axes, wider than the figure.
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(4, 3), layout="constrained")
  ax = fig.add_subplot()
  ax.bar([0, 1], [0.3, 0.6], label=f"tuned on {CROSS_VIDEO} (mean 0.414)")
  fig.legend(loc="outside lower center")
  fig.savefig(tmp_path / "clipped.png", dpi=100)
  assert any(line.startswith("legend") for line in clipped(fig))
  assert inked_border(tmp_path / "clipped.png")


def _report(num_aus, tuned_on, split="validation"):
  (p, y, v, face), (pt, yt, vt, face_t) = (random_split(20, num_aus=num_aus, num_videos=6),
                                           random_split(21, num_aus=num_aus, num_videos=6))
  names = aus.names(aus.AFFWILD2 if num_aus == 12 else aus.UNION17[:num_aus])
  report = reports.evaluation_report(p, y, v, au_names=names, window=20, split=split,
                                     tune=(pt, yt, vt, face_t), tuned_on="holdout",
                                     windows=(5, 10), face_valid=face)
  # A cross-video report (mlt_flax/evaluate.py) has one tuned window per video half.
  cross = tuned_on == CROSS_VIDEO
  return {**report, "tuned_on": tuned_on,
          "window_tuned": [5, 10] if cross else report["window_tuned"]}


@pytest.mark.parametrize("num_aus,tuned_on,split", [
    (12, "train_holdout", "validation"),
    (17, CROSS_VIDEO, "validation"),
    (12, CROSS_VIDEO, "validation video half 0"),
    (2, CROSS_VIDEO, "a validation split with a long descriptive name, for the title"),
])
def test_the_f1_figure_is_whole(tmp_path, num_aus, tuned_on, split):
  path = tmp_path / "f1.png"
  fig = plots.plot_report(_report(num_aus, tuned_on, split), path)
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert_whole(fig, path)
  # Each scoring is in the legend, with its mean F1.
  (legend,) = fig.legends
  assert [" ".join(t.get_text().split()).count("(mean ") for t in legend.get_texts()] == [1] * 4


@pytest.mark.parametrize("num_aus", [1, 12, 17])
@pytest.mark.parametrize("title", ["", LONG_TITLE])
def test_the_timeline_is_whole(tmp_path, num_aus, title):
  rng = np.random.default_rng(num_aus)
  n = 120
  probs = rng.random((n, num_aus))
  face_found = np.arange(n) % 40 >= 5
  path = tmp_path / "timeline.png"
  fig = plots.au_timeline(np.arange(1, n + 1), probs, face_found,
                          aus.names(aus.UNION17[:num_aus]), path, title=title)
  assert_whole(fig, path)


@pytest.mark.parametrize("num_aus", [1, 3, 12, 17])
@pytest.mark.parametrize("title", ["", LONG_TITLE])
def test_the_attention_heatmaps_are_whole(tmp_path, num_aus, title):
  rng = np.random.default_rng(num_aus)
  face = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
  path = tmp_path / "attention.png"
  fig = plots.attention_heatmaps(face, rng.random((num_aus, 8, 8)), rng.random(num_aus),
                                 aus.names(aus.UNION17[:num_aus]), path, title=title)
  assert_whole(fig, path)
