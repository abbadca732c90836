"""How fast the ABAW3 AU metric runs on a whole split, next to scikit-learn in the same run.

  python -m benchmarks.metric_speed [--frames=1000000] [--videos=2000] [--repeats=5]
      [--window=20] [--out=result.json]

Random probabilities and labels (some -1) for a split of the size of Aff-Wild2's AU set, rows
sorted by video. Prints the median wall time of each call over a few repeats, after one
untimed call (benchmarks/timing.py). scikit-learn has no "not annotated" label, so its
reference is what one would write with it: a binary ``f1_score`` per AU over that AU's
annotated frames (the same numbers as ours, checked here). `measure` returns the figures as
a dict, which --out writes as JSON (benchmarks/run.py reads it).
"""

from absl import flags
import numpy as np
from sklearn import metrics as skm

from benchmarks import cli
from benchmarks import timing
from mlt_flax import aus
from mlt_flax import metrics
from mlt_flax import tuning

# Aff-Wild2's AU track is about this many frames in ~300 videos; more videos is the harder case.
DEFAULT_FRAMES = 1_000_000
DEFAULT_VIDEOS = 2000
DEFAULT_REPEATS = 5
# The paper's smoothing window.
DEFAULT_WINDOW = 20
# Share of labels set to -1 (not annotated) and of faceless frames.
UNANNOTATED_RATE = 0.05
FACELESS_RATE = 0.05
POSITIVE_RATE = 0.2


def make_split(frames, videos, num_aus, seed=0):
  """probs (N, T) float32, labels (N, T) int8, video ids (N,) sorted, face mask (N,)."""
  rng = np.random.default_rng(seed)
  cuts = np.sort(rng.choice(np.arange(1, frames), videos - 1, replace=False))
  video_ids = np.zeros(frames, np.int32)
  video_ids[cuts] = 1
  video_ids = np.cumsum(video_ids)
  probs = rng.random((frames, num_aus), dtype=np.float32)
  labels = (rng.random((frames, num_aus)) < POSITIVE_RATE).astype(np.int8)
  labels[rng.random((frames, num_aus)) < UNANNOTATED_RATE] = -1
  face = rng.random(frames) >= FACELESS_RATE
  return probs, labels, video_ids, face


def sklearn_f1(probs, labels, threshold=metrics.DEFAULT_THRESHOLD):
  """Per-AU binary F1 with scikit-learn, each AU over its annotated frames."""
  out = []
  for t in range(labels.shape[1]):  # one call per AU: that is how sklearn takes masks
    m = labels[:, t] >= 0
    out.append(skm.f1_score(labels[m, t], probs[m, t] >= threshold, zero_division=0))
  return np.array(out)


def measure(frames: int = DEFAULT_FRAMES, videos: int = DEFAULT_VIDEOS,
            repeats: int = DEFAULT_REPEATS, window: int = DEFAULT_WINDOW) -> dict:
  """Median seconds of each metric call on a synthetic split of `frames` rows.

  Returns f1_s (our f1_scores), sklearn_s (sklearn_f1), smooth_s (smooth), smooth_f1_s
  (smooth + f1_scores), tune_s (tune_thresholds), tune_sklearn_s (a sklearn loop over the
  tuning grid: grid_size x sklearn_s, extrapolated), and the sizes they were measured at.
  """
  num_aus = len(aus.AFFWILD2)
  probs, labels, video_ids, face = make_split(frames, videos, num_aus)
  # The same numbers from both, or the times mean nothing.
  ours, _ = metrics.f1_scores(probs, labels)
  np.testing.assert_allclose(ours, sklearn_f1(probs, labels), rtol=1e-12)
  median = lambda fn: timing.median_times(fn, 0, repeats)[1]
  sklearn_s = median(lambda: sklearn_f1(probs, labels))
  grid_size = tuning.threshold_grid(metrics.DEFAULT_GRID_STEP).size
  return {
      "frames": frames, "videos": videos, "aus": num_aus, "repeats": repeats,
      "window": window, "grid_size": grid_size,
      "f1_s": median(lambda: metrics.f1_scores(probs, labels)),
      "sklearn_s": sklearn_s,
      "smooth_s": median(lambda: metrics.smooth(probs, video_ids, window, face)),
      "smooth_f1_s": median(
          lambda: metrics.f1_scores(metrics.smooth(probs, video_ids, window, face), labels)),
      "tune_s": median(lambda: tuning.tune_thresholds(probs, labels)),
      "tune_sklearn_s": grid_size * sklearn_s,
  }


def table(m: dict) -> str:
  """The figures of `measure`, one call a line: name, median seconds, note."""
  rows = [
      ("f1_scores (ours)", m["f1_s"], ""),
      ("sklearn f1_score, per AU masked", m["sklearn_s"],
       f"ours {m['sklearn_s'] / m['f1_s']:.1f}x faster"),
      (f"smooth(window={m['window']}, face mask)", m["smooth_s"], ""),
      ("smooth + f1_scores", m["smooth_f1_s"], "target: well under 1 s"),
      (f"tune_thresholds ({m['grid_size']}-point grid)", m["tune_s"],
       f"a sklearn loop over the grid: ~{m['tune_sklearn_s']:.0f} s (extrapolated)"),
  ]
  width = max(len(r[0]) for r in rows)
  lines = [f"{m['frames']:,} frames x {m['aus']} AUs, {m['videos']} videos, "
           f"median of {m['repeats']} runs",
           f"{'call':<{width}}  {'median s':>9}  note"]
  lines += [f"{name:<{width}}  {seconds:9.3f}  {note}" for name, seconds, note in rows]
  return "\n".join(lines)


def _define_flags() -> None:
  flags.DEFINE_integer("frames", DEFAULT_FRAMES, "Frames (rows) of the synthetic split.")
  flags.DEFINE_integer("videos", DEFAULT_VIDEOS, "Videos the frames are split into.")
  flags.DEFINE_integer("repeats", DEFAULT_REPEATS, "Timed calls of each; the median counts.")
  flags.DEFINE_integer("window", DEFAULT_WINDOW, "Smoothing window, frames.")
  flags.DEFINE_string("out", "", "Also write the figures here as JSON.")


def main() -> None:
  f = flags.FLAGS
  figures = measure(f.frames, f.videos, f.repeats, f.window)
  print(table(figures))
  if f.out:
    cli.write_json(f.out, figures)


if __name__ == "__main__":
  cli.run(_define_flags, main)
