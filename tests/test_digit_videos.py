"""The second benchmark: digit videos from real scans, in the Aff-Wild2 layout, built by the
real abaw3_au builder; train, validation and test share no scan."""

import gzip
import hashlib
import pathlib

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds

from mlt_flax import assets
from mlt_flax.data import build
from mlt_flax.data import digit_videos

SCANS_PER_CLASS = 6
SPLITS = {"train": "Train_Set", "validation": "Validation_Set", "test": "Test_Set"}
SIZES = dict(num_train_videos=3, num_val_videos=2, num_test_videos=2, frames_per_video=40)


@pytest.fixture(scope="module")
def scans_file(tmp_path_factory):
  """A digits.csv.gz in the asset's exact format: 64 grey levels 0..16, then the class."""
  rng = np.random.default_rng(0)
  rows = [list(rng.integers(0, 17, 64)) + [k] for k in range(10) for _ in range(SCANS_PER_CLASS)]
  path = tmp_path_factory.mktemp("scans") / "digits.csv.gz"
  with gzip.open(path, "wt") as f:
    f.write("\n".join(",".join(f"{v}.0" for v in row) for row in rows) + "\n")
  return path


@pytest.fixture(scope="module")
def generated(tmp_path_factory, scans_file):
  out = tmp_path_factory.mktemp("digit_videos")
  summary = digit_videos.generate(out, **SIZES, scans_path=scans_file)
  return out, summary


def _labels(out, split):
  folder = out / "AU_Detection_Challenge" / SPLITS[split]
  return {p.stem: np.loadtxt(p, delimiter=",", skiprows=1, dtype=int)
          for p in sorted(folder.glob("*.txt"))}


def test_the_twelve_labels_say_which_digits_how_many_and_whether_the_top_left_holds_one():
  classes = np.array([3, 7, 3, 5])  # scan index -> class
  labels = digit_videos.frame_labels([0, None, 2, 1], classes)  # 3 (top left), 3, 7
  assert np.flatnonzero(labels[:10]).tolist() == [3, 7]
  assert labels[10] == 1 and labels[11] == 1  # three digits; one at the top left
  labels = digit_videos.frame_labels([None, None, None, 3], classes)
  assert np.flatnonzero(labels).tolist() == [5]  # one digit, bottom right
  labels = digit_videos.frame_labels([1, 0, None, None], classes)
  assert np.flatnonzero(labels).tolist() == [3, 7, 11]  # two digits, one at the top left
  assert not digit_videos.frame_labels([None] * 4, classes).any()


def test_train_validation_and_test_draw_from_disjoint_pools_of_scans(generated):
  _, summary = generated
  pools = digit_videos.split_pools(10 * SCANS_PER_CLASS, seed=0)
  assert set(pools) == set(SPLITS)
  everything = np.concatenate(list(pools.values()))
  assert sorted(everything.tolist()) == list(range(10 * SCANS_PER_CLASS))  # each scan once
  assert len(pools["validation"]) == len(pools["test"]) == round(0.2 * 10 * SCANS_PER_CLASS)
  used = {split: set(summary["splits"][split]["scans"]) for split in pools}
  for split, pool in pools.items():
    assert used[split] and used[split] <= set(pool.tolist()), split
  assert not used["train"] & used["validation"]
  assert not (used["train"] | used["validation"]) & used["test"]


def test_the_videos_are_in_the_aff_wild2_layout_with_a_label_line_per_frame(generated):
  out, summary = generated
  assert {p.name for p in (out / "AU_Detection_Challenge").iterdir()} == set(SPLITS.values())
  for split in SPLITS:
    labels = _labels(out, split)
    assert len(labels) == summary["splits"][split]["videos"]
    assert sum(len(v) for v in labels.values()) == summary["splits"][split]["frames"]
    for video, rows in labels.items():
      frames = sorted((out / "cropped_aligned" / video).glob("*.jpg"))
      assert [p.name for p in frames] == [f"{t:05d}.jpg" for t in range(1, len(rows) + 1)]
      assert rows.shape[1] == 12 and set(np.unique(rows)) <= {0, 1}
  header = next((out / "AU_Detection_Challenge" / "Train_Set").glob("*.txt")).read_text()
  assert header.splitlines()[0] == "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"


def test_labels_hold_for_segments_of_frames_as_au_events_do(generated):
  out, _ = generated
  for rows in _labels(out, "train").values():
    changes = np.flatnonzero(np.any(rows[1:] != rows[:-1], axis=1))
    # Labels change only at segment boundaries, at most once per SEGMENT_FRAMES[0] frames.
    assert len(changes) <= len(rows) / digit_videos.SEGMENT_FRAMES[0]
    assert np.all(np.diff(changes) >= digit_videos.SEGMENT_FRAMES[0])


def test_the_same_seed_gives_the_same_bytes_and_a_rerun_is_skipped(generated, scans_file,
                                                                     tmp_path):
  out, _ = generated
  again = digit_videos.generate(tmp_path, **SIZES, scans_path=scans_file)
  digest = lambda root: hashlib.sha256(b"".join(
      p.read_bytes() for p in sorted(pathlib.Path(root).rglob("*.jpg")))).hexdigest()
  assert digest(out) == digest(tmp_path) and "skipped" not in again
  assert digit_videos.generate(tmp_path, **SIZES, scans_path=scans_file)["skipped"]


def test_a_folder_of_other_data_is_never_overwritten(tmp_path, scans_file):
  (tmp_path / "cropped_aligned").mkdir()
  with pytest.raises(FileExistsError, match="may be real data"):
    digit_videos.generate(tmp_path, num_train_videos=1, num_val_videos=1, num_test_videos=1,
                          scans_path=scans_file)


def test_the_real_builder_builds_them(generated, tmp_path):
  out, summary = generated
  build.build("abaw3_au", str(out), str(tmp_path / "tfds"))
  for split in SPLITS:
    ds = tfds.load("abaw3_au", split=split, data_dir=tmp_path / "tfds", download=False)
    examples = list(tfds.as_numpy(ds))
    assert len(examples) == summary["splits"][split]["frames"]
    assert examples[0]["image"].shape == (112, 112, 3)


def test_the_asset_holds_the_1797_real_scans_of_ten_classes():
  scans = digit_videos.Scans.load(assets.path(digit_videos.ASSET))
  assert scans.images.shape == (1797, 8, 8)
  assert 0.0 <= scans.images.min() and scans.images.max() == 1.0
  assert np.bincount(scans.classes).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174,
                                                 180]


def test_every_page_is_light_and_its_ink_dark(generated):
  # Version 2 keeps the contrast one way (version 1 inverted half the pages): the darkest
  # pixels of a frame with digits are ink, far below the page's level.
  out, _ = generated
  for video in sorted((out / "cropped_aligned").iterdir()):
    frame = cv2.imread(str(video / "00001.jpg"), cv2.IMREAD_GRAYSCALE)
    assert np.median(frame) >= 140, video.name
