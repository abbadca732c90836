"""The tf.data pipeline over a real TFDS build (synthetic Aff-Wild2 layout)."""

import collections

import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import tiny
from mlt_flax import aus
from mlt_flax import input_pipeline


@pytest.fixture
def config(synthetic_tfds):
  c = tiny.get_config()
  c.data.data_dir = synthetic_tfds
  return c


def all_frames(data_dir, split):
  ds = input_pipeline.builder("abaw3_au", data_dir).as_dataset(
      split=split, decoders={"image": tfds.decode.SkipDecoding()})
  return {(ex["video"].decode(), int(ex["frame"])): ex["labels"] for ex in tfds.as_numpy(ds)}


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
  frames = all_frames(config.data.data_dir, "train")
  kept = np.array([v for (vid, f), v in frames.items() if (f - 1) % 5 == 0 and (v >= 0).any()])
  assert s1.num_frames == s2.num_frames == len(kept)
  np.testing.assert_array_equal(s1.positives, (kept == 1).sum(0))
  w = input_pipeline.pooled_frequency_weights([s1])
  from mlt_flax import losses  # pylint: disable=g-import-not-at-top
  np.testing.assert_allclose(w, losses.frequency_weights(kept), rtol=1e-6)


def test_unbuilt_dataset_says_how_to_build_it(tmp_path):
  with pytest.raises(FileNotFoundError, match="python -m mlt_flax.data.build --dataset=abaw3_au"):
    input_pipeline.builder("abaw3_au", str(tmp_path))


def test_every_process_yields_the_same_number_of_eval_batches(config):
  # Each eval batch is one collective step: a process with fewer frames pads with empty ones.
  counts = [sum(1 for _ in input_pipeline.eval_batches(config, local_batch_size=4,
                                                       process_index=p, process_count=5))
            for p in range(5)]
  assert len(set(counts)) == 1
