"""How fast the ABAW3 AU metric runs on a whole split, next to scikit-learn in the same run.

  python -m benchmarks.metric_speed [--frames 1000000] [--videos 2000] [--repeats 5]

Random probabilities and labels (some -1) for a split of the size of Aff-Wild2's AU set, rows
sorted by video. Prints the median wall time of each call over a few repeats. scikit-learn
has no "not annotated" label, so its reference is what one would write with it: a binary
``f1_score`` per AU over that AU's annotated frames (the same numbers as ours, checked here).
"""

import argparse
import statistics
import time

import numpy as np
from sklearn import metrics as skm

from mlt_flax import aus
from mlt_flax import metrics

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


def median_time(fn, repeats):
  """(median seconds over `repeats` calls, last result)."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times), out


def sklearn_f1(probs, labels, threshold=metrics.DEFAULT_THRESHOLD):
  """Per-AU binary F1 with scikit-learn, each AU over its annotated frames."""
  out = []
  for t in range(labels.shape[1]):  # one call per AU: that is how sklearn takes masks
    m = labels[:, t] >= 0
    out.append(skm.f1_score(labels[m, t], probs[m, t] >= threshold, zero_division=0))
  return np.array(out)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
  parser.add_argument("--videos", type=int, default=DEFAULT_VIDEOS)
  parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
  parser.add_argument("--window", type=int, default=DEFAULT_WINDOW)
  args = parser.parse_args()

  num_aus = len(aus.AFFWILD2)
  probs, labels, video_ids, face = make_split(args.frames, args.videos, num_aus)
  print(f"{args.frames:,} frames x {num_aus} AUs, {args.videos} videos, "
        f"median of {args.repeats} runs")

  t_ours, (ours, _) = median_time(lambda: metrics.f1_scores(probs, labels), args.repeats)
  t_sk, theirs = median_time(lambda: sklearn_f1(probs, labels), args.repeats)
  np.testing.assert_allclose(ours, theirs, rtol=1e-12)  # same numbers, or the times mean nothing
  t_smooth, _ = median_time(
      lambda: metrics.smooth(probs, video_ids, args.window, face), args.repeats)
  t_tune, _ = median_time(lambda: metrics.tune_thresholds(probs, labels), args.repeats)
  grid_size = metrics.threshold_grid(metrics.DEFAULT_GRID_STEP).size
  t_score_smoothed, _ = median_time(
      lambda: metrics.f1_scores(metrics.smooth(probs, video_ids, args.window, face), labels),
      args.repeats)

  rows = [
      ("f1_scores (ours)", t_ours, ""),
      ("sklearn f1_score, per AU masked", t_sk, f"ours {t_sk / t_ours:.1f}x faster"),
      (f"smooth(window={args.window}, face mask)", t_smooth, ""),
      ("smooth + f1_scores", t_score_smoothed, "target: well under 1 s"),
      (f"tune_thresholds ({grid_size}-point grid)", t_tune,
       f"a sklearn loop over the grid: ~{grid_size * t_sk:.0f} s (extrapolated)"),
  ]
  width = max(len(r[0]) for r in rows)
  print(f"{'call':<{width}}  {'median s':>9}  note")
  for name, seconds, note in rows:
    print(f"{name:<{width}}  {seconds:9.3f}  {note}")


if __name__ == "__main__":
  main()
