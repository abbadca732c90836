"""The TFDS builders of Aff-Wild2 (ABAW3 AU), BP4D and DISFA, against each dataset's format.

Parsers are tested on strings; builders on tiny manual dirs written by ``dataset_fixtures`` in
each dataset's exact layout, read back frame by frame. Each test quotes the format line it
checks.
"""

import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from absl import flags
import tensorflow_datasets as tfds

import dataset_fixtures as fixtures
from mlt_flax import aus
from mlt_flax.data import affwild2_format
from mlt_flax.data import bp4d
from mlt_flax.data import bp4d_format
from mlt_flax.data import build
from mlt_flax.data import build_report
from mlt_flax.data import disfa
from mlt_flax.data import disfa_format
from mlt_flax.data import frames
from mlt_flax.data import label_files
from mlt_flax.data.label_files import DatasetFormatError

REPO = pathlib.Path(__file__).resolve().parents[1]
WRITERS = {
    "abaw3_au": fixtures.write_affwild2,
    "bp4d": fixtures.write_bp4d,
    "disfa": fixtures.write_disfa,
}
BUILDERS = build.BUILDERS
# JPEG re-quantises a flat colour by a few levels.
COLOR_TOLERANCE = 4


def _build(name, fixture, data_dir, **kwargs):
  builder = BUILDERS[name](data_dir=data_dir, **kwargs)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=fixture.manual_dir))
  return builder


def _read(builder, split, faceless=False):
  """{(video, frame): example} of one split, as numpy: the frames with a face crop (or, with
  faceless, the labelled frames without one, which abaw3_au writes with face=False)."""
  examples = {}
  for ex in tfds.as_numpy(builder.as_dataset(split=split)):
    key = (ex["video"].decode(), int(ex["frame"]))
    assert key not in examples, f"{key} written twice"
    if bool(ex["face"]) != faceless:
      examples[key] = ex
  return examples


def _assert_matches(builder, fixture):
  """Every split holds exactly the fixture's frames, labels, subjects and images."""
  assert set(builder.info.splits) == set(fixture.examples)
  for split, expected in fixture.examples.items():
    got = _read(builder, split)
    assert sorted(got) == sorted(expected), split
    for key, want in expected.items():
      ex = got[key]
      assert ex["labels"].dtype == np.int8
      assert tuple(ex["labels"].tolist()) == want.labels, (split, key)
      assert ex["subject"].decode() == want.subject, (split, key)
      mean = ex["image"].reshape(-1, 3).mean(axis=0)
      np.testing.assert_allclose(mean, want.color, atol=COLOR_TOLERANCE, err_msg=str(key))


def _summary(builder):
  return json.loads((pathlib.Path(builder.data_dir) / build_report.SUMMARY_FILENAME).read_text())


# ---------------------------------------------------------------------------------------------
# Parsers.


def test_affwild2_line_i_is_frame_i_and_all_minus_one_rows_are_kept():
  # "header AU1,...,AU26; data line i is frame i; values 0, 1 or -1"
  lines = [affwild2_format.header(), "1,0,0,0,0,0,0,0,0,0,0,1",
           "-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1", "0,1,0,0,0,0,0,0,0,0,0,0"]
  table = affwild2_format.parse_labels(lines, "v.txt", label_files.Problems())
  assert affwild2_format.header() == "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"
  np.testing.assert_array_equal(table.frames, [1, 2, 3])
  np.testing.assert_array_equal(table.labels[1], [-1] * len(aus.AFFWILD2))
  assert table.labels[0, 0] == 1 and table.labels[0, -1] == 1 and table.labels[2, 1] == 1


@pytest.mark.parametrize("line, reason", [
    ("0,1,0", "3 fields; expected 12"),
    ("0,x,0,0,0,0,0,0,0,0,0,0", "AU2 (field 2) is 'x', not an integer"),
    ("0,2,0,0,0,0,0,0,0,0,0,0", "AU2 (field 2) is 2, out of range; expected one of [-1, 0, 1]"),
    ("", "1 fields; expected 12"),  # a blank line mid-file would shift every later frame
])
def test_affwild2_bad_line_names_file_and_line(line, reason):
  lines = [affwild2_format.header(), "0," * 11 + "0", line, "0," * 11 + "0"]
  with pytest.raises(DatasetFormatError, match="^" + re.escape(f"v.txt:3: {reason}")):
    affwild2_format.parse_labels(lines, "v.txt", label_files.Problems())
  # --skip_bad: the line is skipped (its frame 2 with it) and reported; frame 3 stays frame 3.
  problems = label_files.Problems(skip_bad=True)
  table = affwild2_format.parse_labels(lines, "v.txt", problems)
  np.testing.assert_array_equal(table.frames, [1, 3])
  assert problems.bad_lines[0].startswith("v.txt:3: ")


def test_affwild2_wrong_header_is_fatal_even_with_skip_bad():
  # "header line AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"
  lines = ["AU1,AU2,AU4", "0,0,0"]
  with pytest.raises(DatasetFormatError, match=r"^v\.txt:1: header is 'AU1,AU2,AU4'; expected"):
    affwild2_format.parse_labels(lines, "v.txt", label_files.Problems(skip_bad=True))


def test_affwild2_left_right_are_two_videos_of_one_subject():
  # "Videos with two people carry _left / _right"
  assert affwild2_format.subject_of("video10_1_left") == "video10_1"
  assert affwild2_format.subject_of("video10_1_right") == "video10_1"
  assert affwild2_format.subject_of("1-30-1280x720") == "1-30-1280x720"


def test_bp4d_selects_the_12_aus_by_header_and_maps_9_to_minus_one():
  # "header row of integers: column 0 is the frame number, other columns AU numbers; 9 = unknown"
  header = [0, 28, *reversed(aus.BP4D), 5]  # extra AUs, any order
  row = [7, 1] + [9 if au == 14 else int(au % 2) for au in reversed(aus.BP4D)] + [1]
  lines = [",".join(map(str, header)), ",".join(map(str, row))]
  table = bp4d_format.parse_occ(lines, "F001_T1.csv", label_files.Problems())
  np.testing.assert_array_equal(table.frames, [7])
  want = [-1 if au == 14 else au % 2 for au in aus.BP4D]
  np.testing.assert_array_equal(table.labels[0], want)


def test_bp4d_header_missing_an_au_or_not_integers_is_fatal():
  with pytest.raises(DatasetFormatError, match=r"^F\.csv:1: header lacks column\(s\) \[14\]"):
    bp4d_format.parse_occ(
        [",".join(str(n) for n in (0, *aus.BP4D) if n != 14)], "F.csv",
        label_files.Problems(skip_bad=True))
  with pytest.raises(DatasetFormatError, match=r"^F\.csv:1: header field 'AU1' is not an int"):
    bp4d_format.parse_occ(["0,AU1"], "F.csv", label_files.Problems())


def test_bp4d_out_of_range_and_duplicate_rows():
  header = ",".join(map(str, (0, *aus.BP4D)))
  with pytest.raises(DatasetFormatError, match=r"^F\.csv:2: AU1 \(field 2\) is 2, out of range"):
    bp4d_format.parse_occ([header, "1," + "2," + "0," * 10 + "0"], "F.csv",
                          label_files.Problems())
  row = "1," + "0," * 11 + "0"
  with pytest.raises(DatasetFormatError, match=r"^F\.csv:3: frame 1 appears twice"):
    bp4d_format.parse_occ([header, row, row], "F.csv", label_files.Problems())


def test_disfa_present_iff_intensity_at_least_2_and_missing_frames_are_minus_one():
  # "lines frame,intensity, 1-based frames, intensity 0-5; present iff intensity >= 2"
  au1 = disfa_format.parse_intensities(["1,0", "2,1", "3,2", "4,5"], "a1",
                                       label_files.Problems())
  au2 = disfa_format.parse_intensities(["1,3", "3,0"], "a2", label_files.Problems())
  table = disfa_format.occurrence_table([au1, au2])
  np.testing.assert_array_equal(table.frames, [1, 2, 3, 4])
  np.testing.assert_array_equal(table.labels, [[0, 1], [0, -1], [1, 0], [1, -1]])


@pytest.mark.parametrize("lines, reason", [
    (["1,0", "2,1", "1,4"], "a.txt:3: frame 1 appears twice"),
    (["1,0", "2,6"], "a.txt:2: intensity 6 is out of range; expected 0-5"),
    (["1,0", "2,high"], "a.txt:2: intensity 'high' is not an integer"),
    (["1,0", "2,1,0"], "a.txt:2: 3 fields; expected 2"),
    (["0,1"], "a.txt:1: frame '0' is not an integer >= 1"),
])
def test_disfa_bad_lines(lines, reason):
  with pytest.raises(DatasetFormatError, match="^" + re.escape(reason)):
    disfa_format.parse_intensities(lines, "a.txt", label_files.Problems())


def test_frame_numbers_are_read_whatever_the_padding():
  # BP4D copies name frames 0001.jpg, 001.jpg, 1.jpg or 01234.jpg: detect, don't assume.
  index = frames.index_frames(
      ["0001.jpg", "002.JPG", "3.png", "01234.jpeg", "Thumbs.db", "x.jpg"], "/f")
  assert {n: p.name for n, p in index.items()} == {
      1: "0001.jpg", 2: "002.JPG", 3: "3.png", 1234: "01234.jpeg"}
  with pytest.raises(DatasetFormatError, match=r"^/f: files '0001.jpg' and '1.jpg' are both"):
    frames.index_frames(["0001.jpg", "1.jpg"], "/f")


def test_disfa_zero_based_folders_are_shifted_to_one_based_frames():
  # "Extracted frames are commonly 0-based (SN001/0.png): mind the off-by-one."
  zero = frames.index_frames(["0.png", "1.png"], "/z")
  assert {f: p.name for f, p in frames.shift_to_one_based(zero).items()} == {
      1: "0.png", 2: "1.png"}
  one = frames.index_frames(["1.png", "2.png"], "/o")
  assert {f: p.name for f, p in frames.shift_to_one_based(one).items()} == {
      1: "1.png", 2: "2.png"}


@pytest.mark.parametrize("kind", fixtures.BAD_IMAGE_KINDS)
def test_unreadable_images_name_the_file(tmp_path, kind):
  path = tmp_path / "00001.jpg"
  path.write_bytes(fixtures.image_bytes((10, 20, 30), fixtures.AFFWILD2_SIDE))
  assert frames.read_image(path, label_files.Problems()) == path.read_bytes()
  fixtures.corrupt_image(path, kind)
  expected = f"^{re.escape(str(path))}: .*expected a complete JPEG or PNG"
  with pytest.raises(DatasetFormatError, match=expected):
    frames.read_image(path, label_files.Problems())
  problems = label_files.Problems(skip_bad=True)
  assert frames.read_image(path, problems) is None
  assert problems.bad_images[0].startswith(f"{path}: ")


def test_truncated_png_is_caught(tmp_path):
  path = tmp_path / "0.png"
  path.write_bytes(fixtures.image_bytes((10, 20, 30), 64, "PNG"))
  fixtures.corrupt_image(path, "truncated_image")
  with pytest.raises(DatasetFormatError, match=f"^{re.escape(str(path))}: unreadable image"):
    frames.read_image(path, label_files.Problems())


def test_subject_in_no_fold_names_subject_and_file():
  with pytest.raises(DatasetFormatError, match=r"^F099_T1.csv: subject 'F099' is in no fold"):
    label_files.fold_of("F099", bp4d.FOLDS, "F099_T1.csv")


def test_folds_partition_the_subjects():
  # JAA-Net protocol: BP4D 41 subjects in 14/14/13, DISFA 27 in 9/9/9, no overlap.
  for folds, sizes in ((bp4d.FOLDS, (14, 14, 13)), (disfa.FOLDS, (9, 9, 9))):
    assert tuple(len(s) for s in folds.values()) == sizes
    assert len(set().union(*folds.values())) == sum(sizes)


# ---------------------------------------------------------------------------------------------
# Builders, end to end.


def test_abaw3_au_build(tmp_path):
  fixture = fixtures.write_affwild2(tmp_path / "manual", line_end="\r\n")
  builder = _build("abaw3_au", fixture, tmp_path / "data")
  _assert_matches(builder, fixture)
  # Features the input pipeline relies on; images at native size (112x112), not resized.
  assert set(builder.info.features) == {"image", "face", "labels", "video", "frame",
                                        "subject"}
  assert builder.info.features["labels"].shape == (len(aus.AFFWILD2),)
  ex = next(iter(tfds.as_numpy(builder.as_dataset(split="train", shuffle_files=False))))
  assert ex["image"].shape == (fixtures.AFFWILD2_SIDE, fixtures.AFFWILD2_SIDE, 3)
  # "_left/_right are two videos" of one subject.
  train = fixture.examples["train"]
  assert {k[0] for k in train} == {"1-30-1280x720", "video5_left", "video5_right"}
  assert train[("video5_right", 1)].subject == "video5"
  # "frames where no face was found are absent" from cropped_aligned: their label rows are
  # written with face=False (the challenge scores them), counted and listed.
  summary = _summary(builder)
  assert builder.info.metadata["au_names"] == list(aus.names(aus.AFFWILD2))
  assert builder.info.metadata["summary"] == summary
  train_summary = summary["splits"]["train"]
  assert train_summary["faceless_frames_kept"] == fixture.missing["train"] == 1
  assert train_summary["frames_skipped_missing_image"] == 0
  assert train_summary["first_missing_images"] == ["1-30-1280x720 frame 3"]
  (faceless,) = _read(builder, "train", faceless=True).values()
  assert (faceless["video"].decode(), int(faceless["frame"])) == ("1-30-1280x720", 3)
  assert not faceless["image"].any()  # a black placeholder, never trained on
  assert train_summary["frames_written"] == len(train)
  assert train_summary["videos"] == 3 and train_summary["subjects"] == 2
  assert train_summary["unannotated_frames_kept"] == 1  # the all -1 row
  # positive rate over valid (non -1) entries, per AU.
  labels = np.array([e.labels for e in train.values()])
  au1 = labels[:, 0]
  assert train_summary["positive_rate"]["AU1"] == round((au1 == 1).sum() / (au1 >= 0).sum(), 4)


def test_abaw3_au_is_registered_and_loads_with_tfds_load(tmp_path):
  fixture = fixtures.write_affwild2(tmp_path / "manual")
  _build("abaw3_au", fixture, tmp_path / "data")
  ds = tfds.load("abaw3_au", split="validation", data_dir=tmp_path / "data", download=False)
  got = {(ex["video"].decode(), int(ex["frame"])): tuple(ex["labels"].tolist())
         for ex in tfds.as_numpy(ds)}
  assert got == {k: e.labels for k, e in fixture.examples["validation"].items()}


def test_bp4d_build(tmp_path):
  # Four frame folders padded 0001.jpg, 01230.jpg, 001.jpg and 1.png; an all-9 row.
  fixture = fixtures.write_bp4d(tmp_path / "manual")
  builder = _build("bp4d", fixture, tmp_path / "data")
  _assert_matches(builder, fixture)
  assert fixture.examples["fold1"][("F001_T1", 2)].labels == (-1,) * len(aus.BP4D)
  assert ("F001_T2", 1230) in fixture.examples["fold1"]
  summary = _summary(builder)
  assert list(summary["splits"]) == ["fold1", "fold2", "fold3"]
  assert summary["splits"]["fold2"]["frames_skipped_missing_image"] == 1
  assert builder.info.metadata["au_names"] == list(aus.names(aus.BP4D))
  # A user trains on fold1+fold2 and validates on fold3.
  n = builder.info.splits["fold1+fold2"].num_examples
  assert n == len(fixture.examples["fold1"]) + len(fixture.examples["fold2"])


def test_disfa_build(tmp_path):
  # SN002: 0.png..4.png (0-based), SN013: 1.jpg.. (1-based), SN003: 0-based, last image
  # missing; SN013_au26.txt lacks frame 2 (-> -1).
  fixture = fixtures.write_disfa(tmp_path / "manual", short_au_file=True)
  builder = _build("disfa", fixture, tmp_path / "data")
  # _assert_matches checks each frame's pixels: 0.png must come back as frame 1.
  _assert_matches(builder, fixture)
  assert fixture.examples["fold2"][("SN013", 2)].labels[-1] == -1
  summary = _summary(builder)
  assert summary["splits"]["fold3"]["frames_skipped_missing_image"] == 1
  assert builder.info.metadata["au_names"] == list(aus.names(aus.DISFA))


def test_misplaced_folders_are_layout_errors(tmp_path):
  # "find the AU_Detection_Challenge folder anywhere under manual_dir": none is an error.
  fixture = fixtures.write_affwild2(tmp_path / "a")
  labels = next(fixture.manual_dir.rglob("AU_Detection_Challenge"))
  labels.rename(labels.with_name("labels"))
  with pytest.raises(DatasetFormatError, match="found 0 AU_Detection_Challenge folders"):
    _build("abaw3_au", fixture, tmp_path / "data")
  # Images/<SN>/ under another name: every frame would be "missing"; that is a layout error.
  fixture = fixtures.write_disfa(tmp_path / "d")
  (fixture.manual_dir / "Images").rename(fixture.manual_dir / "Frames")
  with pytest.raises(DatasetFormatError, match="no frame images found for any of 1 labelled"):
    _build("disfa", fixture, tmp_path / "data")


# Each bad input stops the build naming the file (and line): (dataset, bad kind).
BAD_CASES = [
    *[("abaw3_au", kind) for kind in
      (*fixtures.BAD_LINE_KINDS, "header", *fixtures.BAD_IMAGE_KINDS)],
    ("bp4d", "header"), ("bp4d", "non_numeric"), ("bp4d", "duplicate"),
    ("bp4d", "unknown_subject"), ("bp4d", "truncated_image"),
    ("disfa", "out_of_range"), ("disfa", "duplicate"), ("disfa", "unknown_subject"),
    ("disfa", "empty_image"),
]


@pytest.mark.parametrize("name, bad", BAD_CASES)
def test_bad_input_stops_the_build_naming_file_and_line(tmp_path, name, bad):
  fixture = WRITERS[name](tmp_path / "manual", bad=bad)
  with pytest.raises(DatasetFormatError) as error:
    _build(name, fixture, tmp_path / "data")
  message = str(error.value)
  assert "\n" not in message
  where = f"{fixture.bad_file}" + (f":{fixture.bad_line}:" if fixture.bad_line else ":")
  assert message.startswith(where), message
  if bad == "unknown_subject":
    assert ("F099" if name == "bp4d" else "SN099") in message
  assert not BUILDERS[name](data_dir=tmp_path / "data").is_prepared()


# --skip_bad skips the bad line / image, reports it, and keeps everything else.
SKIP_CASES = [
    ("abaw3_au", "non_numeric"), ("abaw3_au", "truncated_image"),
    ("bp4d", "out_of_range"), ("bp4d", "duplicate"), ("bp4d", "not_image"),
    ("disfa", "fields"), ("disfa", "duplicate"), ("disfa", "empty_image"),
]


@pytest.mark.parametrize("name, bad", SKIP_CASES)
def test_skip_bad_skips_and_reports(tmp_path, name, bad):
  fixture = WRITERS[name](tmp_path / "manual", bad=bad)
  builder = _build(name, fixture, tmp_path / "data", skip_bad=True)
  _assert_matches(builder, fixture)
  summary = _summary(builder)
  assert summary["skip_bad"] is True
  for split, s in summary["splits"].items():
    assert s["bad_lines_skipped"] + s["bad_images_skipped"] == fixture.skipped[split], split
  reported = [w for s in summary["splits"].values()
              for w in s["first_bad_lines"] + s["first_bad_images"]]
  where = f"{fixture.bad_file}" + (f":{fixture.bad_line}:" if fixture.bad_line else ":")
  assert len(reported) == 1 and reported[0].startswith(where), reported


# ---------------------------------------------------------------------------------------------
# Command lines.


def _run(argv, **kwargs):
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                        **kwargs)


@pytest.mark.slow  # the build CLIs in subprocesses
def test_build_cli(tmp_path):
  # python -m mlt_flax.data.build --dataset=disfa --manual_dir=DIR --data_dir=DIR
  fixture = fixtures.write_disfa(tmp_path / "manual")
  result = _run([sys.executable, "-m", "mlt_flax.data.build", "--dataset=disfa",
                 f"--manual_dir={fixture.manual_dir}", f"--data_dir={tmp_path / 'data'}"])
  assert result.returncode == 0, result.stderr[-2000:]
  assert "disfa build summary (skip_bad=False)" in result.stdout
  assert "no image: SN003 frame 4" in result.stdout
  assert (tmp_path / "data" / "disfa" / "2.0.0" / build_report.SUMMARY_FILENAME).exists()


def test_build_cli_error_is_one_line(tmp_path):
  # A bad input exits with status 1 and one line "error: <file>:<line>: ...", no traceback.
  fixture = fixtures.write_disfa(tmp_path / "manual", bad="duplicate")
  result = _run([sys.executable, "-m", "mlt_flax.data.build", "--dataset=disfa",
                 f"--manual_dir={fixture.manual_dir}", f"--data_dir={tmp_path / 'data'}"])
  assert result.returncode == 1, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  assert result.stderr.splitlines()[-1] == (
      f"error: {fixture.bad_file}:{fixture.bad_line}: frame 2 appears twice; expected one line "
      "per frame (use --skip_bad to skip such lines)")


def test_build_cli_flags_are_defined_only_when_run_and_each_has_help():
  # Importing the module (as this test did) defines no flag: modules can import each other.
  assert "mlt_flax.data.build" not in flags.FLAGS.flags_by_module_dict()
  result = _run([sys.executable, "-m", "mlt_flax.data.build", "--help"])
  assert result.stdout.startswith(build.__doc__.split("\n")[0]), result.stdout[:500]
  helps = dict(re.findall(r"^  --(?:\[no\])?(\w+): (.+)$", result.stdout, re.M))
  assert set(helps) == {"dataset", "manual_dir", "data_dir", "skip_bad"}, helps
  assert all(len(text) > 10 for text in helps.values()), helps


@pytest.mark.slow  # the build CLIs in subprocesses
def test_tfds_build_cli(tmp_path):
  # tfds build abaw3_au/skip_bad=True --imports=mlt_flax.data.abaw3_au --manual_dir --data_dir
  fixture = fixtures.write_affwild2(tmp_path / "manual")
  argv = ["abaw3_au/skip_bad=True", "--imports=mlt_flax.data.abaw3_au",
          f"--manual_dir={fixture.manual_dir}", f"--data_dir={tmp_path / 'data'}"]
  # TFDS 4.9's `tfds` entry point imports apache_beam and mlcroissant (for other commands) at
  # start-up; where they are not installed, run its `build` command's own parser and code.
  if all(importlib.util.find_spec(m) for m in ("apache_beam", "mlcroissant")):
    command = [str(pathlib.Path(sys.executable).parent / "tfds"), "build"]
  else:
    command = [sys.executable, "-c",
               "import sys; from tensorflow_datasets.scripts.cli import build, cli_utils; "
               "cli_utils.make_flags_parser(build.Args, 'tfds build')(sys.argv).execute()"]
  result = _run(command + argv)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "abaw3_au build summary (skip_bad=True)" in result.stdout
  data = tmp_path / "data" / "abaw3_au" / "2.0.0"
  assert json.loads((data / build_report.SUMMARY_FILENAME).read_text())["skip_bad"] is True
  builder = tfds.builder("abaw3_au", data_dir=tmp_path / "data")
  _assert_matches(builder, fixture)
