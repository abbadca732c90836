"""Random splits for the metric, tuning and report tests: probabilities, labels, videos, faces."""

import numpy as np

from mlt_flax import aus

AU_NAMES = aus.names(aus.AFFWILD2)


def random_split(seed, num_videos=6, num_aus=12, min_len=1, max_len=40, unannotated=0.1,
                 faceless=0.15, string_ids=False):
  """probs (N, T), labels (N, T) in {-1, 0, 1}, video ids (N,), face mask (N,)."""
  rng = np.random.default_rng(seed)
  lengths = rng.integers(min_len, max_len + 1, num_videos)
  ids = np.repeat(np.arange(num_videos), lengths)
  if string_ids:
    ids = np.array([f"video-{v}" for v in ids])
  n = lengths.sum()
  probs = rng.random((n, num_aus)).astype(np.float32)
  labels = (rng.random((n, num_aus)) < 0.3).astype(np.int64)
  labels[rng.random((n, num_aus)) < unannotated] = -1
  face = rng.random(n) >= faceless
  return probs, labels, ids, face
