"""The tf.data pipeline over a real TFDS build (synthetic Aff-Wild2 layout)."""

import collections

import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import tiny
from mlt_flax import aus
from mlt_flax import input_pipeline
from mlt_flax import losses


@pytest.fixture
def config(synthetic_tfds):
  c = tiny.get_config()
  c.data.data_dir = synthetic_tfds
  return c


def all_frames(data_dir, split, faceless=False):
  """(video, frame) -> labels of the split's frames with a face crop (and without one)."""
  ds = input_pipeline.builder("abaw3_au", data_dir).as_dataset(
      split=split, decoders={"image": tfds.decode.SkipDecoding()})
  return {(ex["video"].decode(), int(ex["frame"])): ex["labels"] for ex in tfds.as_numpy(ds)
          if faceless or ex["face"]}


def test_label_space_mapping_by_au_name():
  index = input_pipeline.label_index("abaw3_au", "union17")
  names = aus.names(aus.UNION17)
  for i, au in enumerate(aus.UNION17):
    expected = aus.AFFWILD2.index(au) if au in aus.AFFWILD2 else -1
    assert index[i] == expected, names[i]
  assert (input_pipeline.label_index("abaw3_au", "abaw3_au") == np.arange(12)).all()


@pytest.mark.parametrize("batch_size,process_count", [(3, 1), (8, 1), (16, 1), (8, 2), (5, 3)])
def test_eval_sees_every_strided_frame_exactly_once(config, batch_size, process_count):
  # "Evaluation: every frame exactly once ... the last batch padded with a mask"
  expected = {k for k in all_frames(config.data.data_dir, "validation")
              if (k[1] - 1) % config.data.frame_stride == 0}
  seen = collections.Counter()
  for p in range(process_count):
    for batch in input_pipeline.eval_batches(config, local_batch_size=batch_size,
                                             process_index=p, process_count=process_count):
      assert batch["image"].shape == (batch_size, 112, 112, 3)
      assert batch["image"].dtype == np.uint8
      for v, f, ok in zip(batch["video"], batch["frame"], batch["valid"]):
        if ok:
          seen[(v.decode(), int(f))] += 1
  assert set(seen) == expected and max(seen.values()) == 1


@pytest.mark.parametrize("process_count", [1, 2])
def test_eval_with_faceless_frames_sees_every_labelled_frame_once(config, process_count):
  # The challenge protocol's input: every labelled frame at full frame rate, faceless ones
  # marked face=False (their image a black placeholder), never trained on.
  everything = all_frames(config.data.data_dir, "validation", faceless=True)
  with_face = all_frames(config.data.data_dir, "validation")
  assert len(everything) > len(with_face)  # the fixture has frames without a face crop
  seen = collections.Counter()
  for p in range(process_count):
    for batch in input_pipeline.eval_batches(config, local_batch_size=8, frame_stride=1,
                                             faceless=True, process_index=p,
                                             process_count=process_count):
      for v, f, ok, face, image in zip(batch["video"], batch["frame"], batch["valid"],
                                       batch["face"], batch["image"]):
        if ok:
          key = (v.decode(), int(f))
          seen[key] += 1
          assert face == (key in with_face)
          assert face or not image.any()  # the placeholder is black
  assert set(seen) == set(everything) and max(seen.values()) == 1


def test_training_never_sees_a_faceless_frame(config):
  faceless = (set(all_frames(config.data.data_dir, "train", faceless=True)) -
              set(all_frames(config.data.data_dir, "train")))
  assert faceless  # the fixture has some
  stats = input_pipeline.split_stats("abaw3_au", config.data.data_dir, "train", 1, "abaw3_au")
  labelled_faces = [k for k, y in all_frames(config.data.data_dir, "train").items()
                    if (np.asarray(y) >= 0).any()]
  assert stats.num_frames == len(labelled_faces)


def test_training_batches_are_strided_labelled_and_mapped(config):
  frames = all_frames(config.data.data_dir, "train")
  batches = input_pipeline.train_iterator(config, local_batch_size=8)
  for _ in range(3):
    b = next(batches)
    assert b["image"].shape == (8, 112, 112, 3) and b["image"].dtype == np.uint8
    assert b["labels"].shape == (8, 12) and b["labels"].dtype == np.float32
    assert (b["labels"] >= 0).any(axis=1).all()  # frames with no valid label are dropped
  # every label row equals a stored row of a kept frame
  kept = [v.astype(np.float32) for (vid, f), v in frames.items()
          if (f - 1) % config.data.frame_stride == 0]
  for row in b["labels"]:
    assert any(np.array_equal(row, k) for k in kept)


def test_union17_marks_uncoded_aus_as_minus_one(config):
  config.data.label_space = "union17"
  config.augment.mixup = False
  b = next(input_pipeline.train_iterator(config, local_batch_size=4))
  missing = input_pipeline.label_index("abaw3_au", "union17") < 0
  assert (b["labels"][:, missing] == -1).all()
  assert b["labels"].shape == (4, 17)


def test_resumed_stream_equals_the_uninterrupted_one(config):
  # "Deterministic given a seed and a step, so a resumed run sees the same stream."
  full = input_pipeline.train_iterator(config, local_batch_size=4)
  batches = [next(full) for _ in range(5)]
  resumed = input_pipeline.train_iterator(config, local_batch_size=4, start_step=3)
  for expected in batches[3:]:
    got = next(resumed)
    np.testing.assert_array_equal(got["image"], expected["image"])
    np.testing.assert_array_equal(got["labels"], expected["labels"])


def stream_frames(config, num):
  """The first `num` frames of the training stream, each as the digest of its pixels."""
  batches = input_pipeline.train_iterator(config, local_batch_size=4)
  out = []
  while len(out) < num:
    out += [hash(image.tobytes()) for image in next(batches)["image"]]
  return out[:num]


def test_every_epoch_is_a_fresh_full_permutation_of_the_training_frames(config):
  # The authors reshuffle their whole training list every epoch: each epoch of the stream
  # holds every kept frame exactly once, in an order of its own; the same order again for
  # the same seed (what makes a resumed run exact).
  n = input_pipeline.split_stats("abaw3_au", config.data.data_dir, "train",
                                 config.data.frame_stride, config.data.label_space).num_frames
  assert n >= 8
  frames = stream_frames(config, 3 * n)
  epochs = [frames[k * n:(k + 1) * n] for k in range(3)]
  assert len(set(epochs[0])) == n  # the synthetic frames are all different images
  for epoch in epochs[1:]:
    assert sorted(epoch) == sorted(epochs[0])  # every frame once
  assert epochs[0] != epochs[1] and epochs[1] != epochs[2]  # reshuffled every epoch
  assert stream_frames(config, 3 * n) == frames  # seeded
  config.seed = 1
  assert stream_frames(config, n) != epochs[0]


def test_processes_share_out_the_same_global_batches(config):
  # Global batch s holds the same frames whatever the number of processes.
  whole = input_pipeline.train_iterator(config, local_batch_size=8)
  parts = [input_pipeline.train_iterator(config, local_batch_size=4, process_index=p,
                                         process_count=2) for p in range(2)]
  for _ in range(3):
    g = next(whole)
    a, b = next(parts[0]), next(parts[1])
    np.testing.assert_array_equal(a["image"], g["image"][:4])  # process p: block p
    np.testing.assert_array_equal(b["labels"], g["labels"][4:])


def test_frequency_weights_are_computed_once_and_cached(config):
  s1 = input_pipeline.split_stats("abaw3_au", config.data.data_dir, "train", 5, "abaw3_au")
  s2 = input_pipeline.split_stats("abaw3_au", config.data.data_dir, "train", 5, "abaw3_au")
  # The frames the training stream keeps: every 5th, with a face crop, with a valid label.
  ds = input_pipeline.builder("abaw3_au", config.data.data_dir).as_dataset(
      split="train", decoders={"image": tfds.decode.SkipDecoding()})
  kept = np.array([ex["labels"] for ex in tfds.as_numpy(ds) if (ex["frame"] - 1) % 5 == 0
                   and ex.get("face", True) and (ex["labels"] >= 0).any()])
  assert s1.num_frames == s2.num_frames == len(kept)
  np.testing.assert_array_equal(s1.positives, (kept == 1).sum(0))
  w = input_pipeline.mixture_frequency_weights([s1], (1.0,))
  np.testing.assert_allclose(w, losses.frequency_weights(kept), rtol=1e-6)


def three_datasets():
  """Labels (n_d, 3) of three datasets, -1 where not annotated, and their SplitStats.

  A: many frames, AU0 rare; B: few frames, AU0 common; C: never annotates AU2. Their raw
  pooled rates and their rates in a (0.2, 0.5, 0.3) mixture differ.
  """
  rng = np.random.default_rng(0)
  sizes, rates = (1000, 100, 200), ((0.05, 0.3, 0.5), (0.6, 0.2, 0.4), (0.3, 0.7, 0.0))
  labels = []
  for d, (n, r) in enumerate(zip(sizes, rates)):
    y = (rng.random((n, 3)) < np.array(r)).astype(np.float32)
    y[rng.random((n, 3)) < 0.2] = -1.0  # some entries not annotated
    if d == 2:
      y[:, 2] = -1.0  # C does not code AU2
    y[:, 0] = np.where((y < 0).all(1), 0.0, y[:, 0])  # every frame kept has a label
    labels.append(y)
  stats = [input_pipeline.SplitStats(len(y), (y == 1).sum(0), (y >= 0).sum(0)) for y in labels]
  return labels, stats


MIXING = (0.2, 0.5, 0.3)


def test_mixture_rate_weights_each_dataset_by_its_mixing_weight():
  labels, stats = three_datasets()
  n = np.array([s.num_frames for s in stats], float)
  p = np.stack([s.positives for s in stats]).astype(float)
  a = np.stack([s.valid for s in stats]).astype(float)
  w = np.array(MIXING)
  # f_t = sum_d w_d p_dt / n_d / sum_d w_d a_dt / n_d  (input_pipeline.mixture_positive_rate)
  by_hand = [sum(w[d] * p[d, t] / n[d] for d in range(3)) /
             sum(w[d] * a[d, t] / n[d] for d in range(3)) for t in range(3)]
  rate = input_pipeline.mixture_positive_rate(stats, MIXING)
  np.testing.assert_allclose(rate, by_hand, rtol=1e-12)
  pooled = p.sum(0) / a.sum(0)
  assert np.abs(rate - pooled).max() > 0.1  # the fixture tells the two apart
  np.testing.assert_allclose(input_pipeline.mixture_positive_rate(stats, 2 * w), rate)
  # Weights proportional to the sizes are one stream of all frames: the raw pooled rate.
  np.testing.assert_allclose(input_pipeline.mixture_positive_rate(stats, n), pooled, rtol=1e-12)
  # One dataset: its own rate, whatever its weight.
  np.testing.assert_allclose(input_pipeline.mixture_positive_rate(stats[:1], (0.3,)),
                             stats[0].positive_rate, rtol=1e-12)
  np.testing.assert_allclose(input_pipeline.mixture_frequency_weights(stats, MIXING),
                             losses.weights_from_positive_rate(by_hand), rtol=1e-6)
  with pytest.raises(ValueError, match="one positive mixing weight per dataset"):
    input_pipeline.mixture_positive_rate(stats, (0.5, 0.5))


def test_mixture_rate_matches_the_mixture_as_sampled():
  """Draw the mixture as train_iterator does: dataset d with probability w_d / sum w, then
  its frames in shuffled passes; the positive rate among the annotated entries -> f_t."""
  labels, stats = three_datasets()
  rng = np.random.default_rng(1)
  draws = 200_000
  source = rng.choice(3, size=draws, p=np.array(MIXING) / sum(MIXING))
  picked = []
  for d, y in enumerate(labels):
    k = int((source == d).sum())
    passes = -(-k // len(y))
    order = np.concatenate([rng.permutation(len(y)) for _ in range(passes)])[:k]
    picked.append(y[order])
  mixed = np.concatenate(picked)
  empirical = (mixed == 1).sum(0) / (mixed >= 0).sum(0)
  rate = input_pipeline.mixture_positive_rate(stats, MIXING)
  np.testing.assert_allclose(empirical, rate, atol=5e-3)
  pooled = sum(s.positives for s in stats) / sum(s.valid for s in stats)
  assert np.abs(empirical - pooled).max() > 0.1  # what the pooled counts would have said


def test_mixture_rate_matches_tf_sample_from_datasets():
  """The sampler train_iterator itself uses, on label-only streams."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  labels, stats = three_datasets()
  parts = [tf.data.Dataset.from_tensor_slices(y).repeat().shuffle(len(y), seed=i)
           for i, y in enumerate(labels)]
  ds = tf.data.Dataset.sample_from_datasets(parts, weights=list(MIXING), seed=0,
                                            stop_on_empty_dataset=False)
  mixed = next(iter(tfds.as_numpy(ds.batch(100_000).take(1))))
  empirical = (mixed == 1).sum(0) / (mixed >= 0).sum(0)
  np.testing.assert_allclose(empirical, input_pipeline.mixture_positive_rate(stats, MIXING),
                             atol=8e-3)


def test_unbuilt_dataset_says_how_to_build_it(tmp_path):
  with pytest.raises(FileNotFoundError, match="python -m mlt_flax.data.build --dataset=abaw3_au"):
    input_pipeline.builder("abaw3_au", str(tmp_path))


def test_every_process_yields_the_same_number_of_eval_batches(config):
  # Each eval batch is one collective step: a process with fewer frames pads with empty ones.
  counts = [sum(1 for _ in input_pipeline.eval_batches(config, local_batch_size=4,
                                                       process_index=p, process_count=5))
            for p in range(5)]
  assert len(set(counts)) == 1


def test_frames_decode_to_the_pixels_pil_gives():
  # Training and evaluation must see the pixels predict reads from a user's frame files
  # (PIL): TensorFlow's default JPEG decoding (the fast IDCT) is up to 4 levels off them.
  import io  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  smooth = np.cumsum(rng.integers(-9, 10, (112, 112, 3)), axis=1) % 256
  for fmt, pixels in (("JPEG", smooth), ("PNG", rng.integers(0, 256, (112, 112, 3)))):
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format=fmt, quality=90)
    data = buffer.getvalue()
    want = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    np.testing.assert_array_equal(input_pipeline.decode_frame(data).numpy(), want, fmt)
