"""A labelled test split, the one nothing selects on: the synthetic generator writes it in the
Aff-Wild2 layout (AU_Detection_Challenge/Test_Set/<video>.txt, frames in cropped_aligned/),
and the abaw3_au builder exposes it as split "test" where the manual dir holds one."""

import dataclasses
import hashlib
import json

import pytest
import tensorflow_datasets as tfds

from mlt_flax.data import affwild2_format
from mlt_flax.data import build
from mlt_flax.data import synthetic

FRAMES = 12
TINY = synthetic.SyntheticConfig(num_train_videos=2, num_val_videos=1, frames_per_video=FRAMES,
                                 frames_jitter=0.0, pair_fraction=0.0)
CHALLENGE = affwild2_format.LABELS_FOLDER


def _digest(root, pattern):
  return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(root.rglob(pattern)))).hexdigest()


@pytest.fixture(scope="module")
def with_test(tmp_path_factory):
  root = tmp_path_factory.mktemp("with_test")
  summary = synthetic.generate(root, config=dataclasses.replace(TINY, num_test_videos=2))
  return root, summary


@pytest.fixture(scope="module")
def without_test(tmp_path_factory):
  root = tmp_path_factory.mktemp("without_test")
  summary = synthetic.generate(root, config=TINY)
  return root, summary


def test_the_test_videos_are_in_the_challenge_layout(with_test):
  root, summary = with_test
  files = sorted((root / CHALLENGE / "Test_Set").glob("*.txt"))
  assert len(files) == summary["splits"]["test"]["videos"] == 2
  for path in files:
    lines = path.read_text().splitlines()
    assert lines[0] == affwild2_format.header()
    assert len(lines) == 1 + FRAMES  # one line per frame
    frames = sorted((root / affwild2_format.IMAGES_FOLDER / path.stem).glob("*.jpg"))
    assert frames and all(1 <= int(p.stem) <= FRAMES for p in frames)
  names = {p.stem for p in (root / CHALLENGE).glob("*/*.txt")}
  assert len(names) == 5  # no video is in two splits


def test_adding_a_test_split_changes_no_other_split(with_test, without_test):
  # A split's videos have their own random streams: the train and validation bytes stay.
  for split in ("Train_Set", "Validation_Set"):
    assert _digest(with_test[0] / CHALLENGE / split, "*.txt") == _digest(
        without_test[0] / CHALLENGE / split, "*.txt")
  train_video = sorted((without_test[0] / CHALLENGE / "Train_Set").glob("*.txt"))[0].stem
  assert _digest(with_test[0] / "cropped_aligned" / train_video, "*.jpg") == _digest(
      without_test[0] / "cropped_aligned" / train_video, "*.jpg")


def test_no_test_videos_means_no_test_folder_and_the_old_identity(without_test):
  root, summary = without_test
  assert not (root / CHALLENGE / "Test_Set").exists()
  assert set(summary["splits"]) == {"train", "validation"}
  params = json.loads((root / synthetic.PARAMS_FILENAME).read_text())["params"]
  assert "num_test_videos" not in params["config"]  # as before the split existed


def test_the_builder_exposes_the_test_split(with_test, tmp_path):
  root, summary = with_test
  builder = build.build("abaw3_au", str(root), str(tmp_path / "tfds"))
  assert set(builder.info.splits) == {"train", "validation", "test"}
  ds = tfds.load("abaw3_au", split="test", data_dir=tmp_path / "tfds", download=False,
                 decoders={"image": tfds.decode.SkipDecoding()})
  videos = {ex["video"].decode() for ex in tfds.as_numpy(ds)}
  assert videos == {p.stem for p in (root / CHALLENGE / "Test_Set").glob("*.txt")}
  assert builder.info.splits["test"].num_examples == 2 * FRAMES  # every labelled frame


def test_a_manual_dir_without_test_set_builds_without_a_test_split(without_test, tmp_path):
  builder = build.build("abaw3_au", str(without_test[0]), str(tmp_path / "tfds"))
  assert set(builder.info.splits) == {"train", "validation"}
  summary = json.loads((tmp_path / "tfds" / "abaw3_au" / str(builder.version) /
                        "summary.json").read_text())
  assert set(summary["splits"]) == {"train", "validation"}


def test_the_linear_baseline_scores_the_test_split_when_asked(with_test):
  from mlt_flax import linear_baseline  # pylint: disable=g-import-not-at-top
  root, _ = with_test
  config = linear_baseline.LinearConfig(steps=5)
  result = linear_baseline.fit_and_score(root, config, split="test")
  images = sum(1 for p in (root / CHALLENGE / "Test_Set").glob("*.txt")
               for _ in (root / affwild2_format.IMAGES_FOLDER / p.stem).glob("*.jpg"))
  assert result["split"] == "test" and result["num_val"] == images
  assert linear_baseline.fit_and_score(root, config)["split"] == "validation"


def test_the_heads_benchmark_refuses_a_build_without_a_test_split(without_test, with_test,
                                                                   tmp_path):
  from benchmarks import heads  # pylint: disable=g-import-not-at-top
  from configs import demo  # pylint: disable=g-import-not-at-top
  config = demo.get_config()
  config.data.data_dir = str(tmp_path / "old")
  build.build("abaw3_au", str(without_test[0]), config.data.data_dir)
  with pytest.raises(FileNotFoundError, match=r"has no 'test' split .* delete that folder"):
    heads.require_test_split(config)
  config.data.data_dir = str(tmp_path / "new")
  build.build("abaw3_au", str(with_test[0]), config.data.data_dir)
  heads.require_test_split(config)  # no error
