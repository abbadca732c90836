"""benchmarks/keras_reference.py: its own reading of the Aff-Wild2 layout, the textbook net,
a loss blind to not-annotated entries, our metric on the test split, and a line in the form of
benchmarks/heads.py's."""

import gzip
import json

import keras
import numpy as np
import pytest

from benchmarks import heads
from benchmarks import keras_reference as kr
from mlt_flax import metrics
from mlt_flax.data import digit_videos


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  rng = np.random.default_rng(0)
  rows = [list(rng.integers(0, 17, 64)) + [k] for k in range(10) for _ in range(6)]
  scans = tmp_path_factory.mktemp("scans") / "digits.csv.gz"
  with gzip.open(scans, "wt") as f:
    f.write("\n".join(",".join(f"{v}.0" for v in row) for row in rows) + "\n")
  out = tmp_path_factory.mktemp("digits")
  digit_videos.generate(out, num_train_videos=2, num_val_videos=1, num_test_videos=1,
                        frames_per_video=20, scans_path=scans)
  (out / "cropped_aligned" / "digits_test_000" / "00003.jpg").unlink()  # a faceless frame
  return out


def test_every_labelled_frame_is_read_and_a_missing_image_marks_it_faceless(root):
  test = kr.read_split(root, "test", 32)
  lines = (root / "AU_Detection_Challenge" / "Test_Set" / "digits_test_000.txt").read_text()
  expected = np.array([[int(v) for v in l.split(",")] for l in lines.splitlines()[1:]])
  np.testing.assert_array_equal(test["labels"], expected)
  assert test["images"].shape == (len(expected), 32, 32, 3)
  assert test["frame"].tolist() == list(range(1, len(expected) + 1))
  assert np.flatnonzero(~test["face"]).tolist() == [2]  # frame 3
  assert not test["images"][2].any() and test["images"][0].any()


def test_the_net_is_the_textbook_cnn():
  model = kr.build_model(112, 12)
  convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
  assert [c.filters for c in convs] == [32, 32, 64, 64, 128, 128, 128, 128]
  assert all(c.kernel_size == (3, 3) for c in convs)
  assert sum(isinstance(l, keras.layers.MaxPooling2D) for l in model.layers) == 4
  dropout = next(l for l in model.layers if isinstance(l, keras.layers.Dropout))
  assert dropout.rate == 0.2
  assert model.output_shape == (None, 12)


def test_not_annotated_entries_carry_no_loss():
  p = np.array([[0.9, 0.2, 0.7]], np.float32)
  y = np.array([[1.0, -1.0, 0.0]], np.float32)
  expected = -(np.log(0.9) + np.log(0.3)) / 2  # the two annotated entries
  assert float(kr.masked_bce(y, p)[0]) == pytest.approx(expected, rel=1e-5)


def test_the_score_is_our_challenge_metric_with_faceless_frames_filled():
  data = {"labels": np.array([[1, 0], [1, 0], [0, 1]]), "face": np.array([True, False, True]),
          "video": np.array(["a", "a", "a"]), "frame": np.array([1, 2, 3])}
  probs = np.array([[0.9, 0.1], [0.0, 0.0], [0.2, 0.8]])  # frame 2 takes frame 1's
  assert kr.challenge_f1(probs, data) == pytest.approx(1.0)
  assert kr.challenge_f1(probs, data) == pytest.approx(metrics.f1_scores(
      metrics.fill_faceless(probs, data["face"], data["video"], data["frame"]),
      data["labels"])[1])


def test_a_seed_trains_with_keras_fit_and_writes_a_line_heads_can_table(root, tmp_path):
  run = kr.run_seed(root, 0, image_size=32, cap_s=600, max_epochs=2, patience=1)
  assert run["model"] == kr.MODEL and run["seed"] == 0
  assert 0.0 <= run["test_f1"] <= 1.0 and 1 <= run["best_epoch"] <= run["epochs"] <= 2
  assert run["stopped"] in ("early stop", "max epochs")
  heads.append_run(tmp_path, run)
  summary = heads.summarise(heads.read_runs(tmp_path))
  assert summary[kr.MODEL]["test"] == run["test_f1"]
  assert f"| {kr.MODEL} |" in heads.markdown(summary)
  json.dumps(run)  # one JSON line


def test_the_clock_stops_fit_after_its_seconds(root):
  run = kr.run_seed(root, 1, image_size=32, cap_s=0.0, max_epochs=50, patience=50)
  assert run["stopped"] == "cap" and run["epochs"] == 1  # stopped in its first epoch
