"""The synthetic AU video generator: Aff-Wild2 layout, determinism, and AUs that mean something."""

import dataclasses
import json
import os
import pathlib
import re
import subprocess
import sys
import warnings

from absl import flags
import numpy as np
import pytest
from PIL import Image

import rss
from mlt_flax import aus
from mlt_flax import linear_baseline
from mlt_flax import metrics
from mlt_flax.data import synthetic
from mlt_flax.data.synthetic import __main__ as synthetic_cli

REPO = pathlib.Path(__file__).resolve().parents[1]

HEADER = "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"
FRAMES = 30
# Tiny and dropout-heavy, so every layout rule is exercised in well under a second.
TINY = dataclasses.replace(
    synthetic.SyntheticConfig(num_train_videos=3, num_val_videos=2, frames_per_video=FRAMES,
                              frames_jitter=0.0),
    nuisance=dataclasses.replace(synthetic.Nuisance(), missing_rate=6.0,
                                 unannotated_segment_prob=1.0, unannotated_length=(3, 6)))
# A pixel "changes" when some channel moves by more than this many grey levels.
CHANGE = 8


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> pathlib.Path:
  root = tmp_path_factory.mktemp("synth")
  synthetic.generate(root, seed=0, config=TINY)
  return root


def label_files(root):
  return sorted((root / "AU_Detection_Challenge").glob("*/*.txt"))


def rows(path):
  return path.read_text().splitlines()[1:]


# --- The Aff-Wild2 / ABAW3 AU-track layout -----------------------------------------------------


def test_label_files_have_the_challenge_header_and_one_line_per_frame(tiny):
  # "first line is the header AU1,...,AU26; data line i is frame i; values 0, 1, or -1"
  assert HEADER == ",".join(aus.names(aus.AFFWILD2))
  files = label_files(tiny)
  assert {p.parent.name for p in files} == {"Train_Set", "Validation_Set"}
  assert len(files) == TINY.num_train_videos + TINY.num_val_videos
  for path in files:
    lines = path.read_text().split("\n")
    assert lines[0] == HEADER
    assert lines[-1] == ""  # newline-terminated, no trailing blank row
    data = lines[1:-1]
    assert len(data) == FRAMES
    for line in data:
      values = line.split(",")
      assert len(values) == 12
      assert set(values) <= {"-1", "0", "1"}


def test_frames_are_five_digit_one_based_112px_rgb_jpegs(tiny):
  # "cropped_aligned/<video>/<frame>.jpg, 112x112 RGB, five-digit 1-based frame numbers"
  videos = sorted(p for p in (tiny / "cropped_aligned").iterdir())
  assert [v.name for v in videos] == sorted(p.stem for p in label_files(tiny))
  for video in videos:
    for frame in video.iterdir():
      assert re.fullmatch(r"\d{5}\.jpg", frame.name), frame
      assert 1 <= int(frame.stem) <= FRAMES
      with Image.open(frame) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (112, 112))


def test_missing_faces_have_no_file_but_keep_their_label_row(tiny):
  # "frames where no face was found are simply absent"; the label file still has every frame.
  missing = 0
  for path in label_files(tiny):
    present = {int(p.stem) for p in (tiny / "cropped_aligned" / path.stem).glob("*.jpg")}
    absent = set(range(1, FRAMES + 1)) - present
    missing += len(absent)
    assert len(rows(path)) == FRAMES
  assert missing > 0


def test_two_person_videos_are_left_right_pairs_in_one_split(tiny):
  # "Videos with two people carry _left / _right."
  for split in ("Train_Set", "Validation_Set"):
    names = {p.stem for p in (tiny / "AU_Detection_Challenge" / split).glob("*.txt")}
    lefts = {n[:-len("_left")] for n in names if n.endswith("_left")}
    rights = {n[:-len("_right")] for n in names if n.endswith("_right")}
    assert lefts and lefts == rights
    for base in lefts:
      left = (tiny / "AU_Detection_Challenge" / split / f"{base}_left.txt")
      right = (tiny / "AU_Detection_Challenge" / split / f"{base}_right.txt")
      assert len(rows(left)) == len(rows(right))  # one video, two people
      assert left.read_text() != right.read_text()


def test_unannotated_rows_come_as_segments(tiny):
  # A whole run of -1 rows (an annotation gap), at least unannotated_length[0] frames long.
  for path in label_files(tiny):
    all_missing = np.array([set(r.split(",")) == {"-1"} for r in rows(path)])
    assert all_missing.sum() >= TINY.nuisance.unannotated_length[0]


# --- Determinism and idempotence --------------------------------------------------------------


def read_all(root):
  return {str(p.relative_to(root)): p.read_bytes()
          for p in sorted(root.rglob("*")) if p.suffix in (".txt", ".jpg")}


def test_same_seed_same_bytes_different_seed_different_data(tiny, tmp_path):
  synthetic.generate(tmp_path / "again", seed=0, config=TINY)
  synthetic.generate(tmp_path / "other", seed=1, config=TINY)
  first, again, other = read_all(tiny), read_all(tmp_path / "again"), read_all(tmp_path / "other")
  assert first == again  # label files and JPEG bytes (hence pixels) identical
  labels = lambda files: [v for k, v in sorted(files.items()) if k.endswith(".txt")]
  assert labels(first) != labels(other)
  pixels = lambda files: [v for k, v in sorted(files.items()) if k.endswith(".jpg")][:5]
  assert pixels(first) != pixels(other)


def test_rerun_with_the_same_parameters_is_skipped(tiny):
  stamp = {p: p.stat().st_mtime_ns for p in tiny.rglob("*.txt")}
  summary = synthetic.generate(tiny, seed=0, config=TINY)
  assert summary["skipped"]
  assert summary["splits"]["train"]["videos"] == TINY.num_train_videos
  assert stamp == {p: p.stat().st_mtime_ns for p in tiny.rglob("*.txt")}
  params = (tiny / "generator.json").read_text()
  assert '"seed": 0' in params and '"frames_per_video": 30' in params


def test_refuses_to_overwrite_a_folder_it_did_not_generate(tmp_path):
  (tmp_path / "AU_Detection_Challenge" / "Train_Set").mkdir(parents=True)
  with pytest.raises(FileExistsError):
    synthetic.generate(tmp_path, seed=0, config=TINY)


def test_workers_started_after_jax_do_not_fork_and_write_the_same_bytes(tiny, tmp_path):
  # The demo generates after JAX has started its threads, where os.fork() may deadlock (JAX
  # warns "os.fork() was called..."): workers start from a fresh interpreter instead.
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  jnp.ones(3).block_until_ready()  # JAX's backend and its threads are up
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    synthetic.generate(tmp_path, seed=0, config=TINY, num_workers=2)
  assert not caught, [f"{w.category.__name__}: {w.message}" for w in caught]
  assert read_all(tmp_path) == read_all(tiny)  # the single-process generation's bytes


def _run_cli(*args):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  return subprocess.run([sys.executable, "-m", "mlt_flax.data.synthetic", *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # a subprocess
def test_cli_writes_what_generate_writes_and_a_contact_sheet(tmp_path):
  # python -m mlt_flax.data.synthetic --out_dir=DIR ... [--contact_sheet=PNG]
  sizes = dict(num_train_videos=2, num_val_videos=1, frames_per_video=6)
  result = _run_cli(f"--out_dir={tmp_path / 'cli'}", "--seed=3", "--num_workers=2",
                    f"--contact_sheet={tmp_path / 'sheet.png'}",
                    *(f"--{k}={v}" for k, v in sizes.items()))
  assert result.returncode == 0, result.stderr[-2000:]
  summary = json.loads(result.stdout)
  assert summary["splits"]["train"]["videos"] == 2 and not summary["skipped"]
  synthetic.generate(tmp_path / "api", seed=3, **sizes)
  assert read_all(tmp_path / "cli") == read_all(tmp_path / "api")
  with Image.open(tmp_path / "sheet.png") as sheet:
    assert sheet.format == "PNG" and sheet.width > 4 * 112


def test_cli_flags_are_defined_only_when_run_and_each_has_help():
  # Importing the CLI module (as this test did) defines no flag.
  assert synthetic_cli.__name__ not in flags.FLAGS.flags_by_module_dict()
  result = _run_cli("--help")
  assert result.stdout.startswith(synthetic_cli.__doc__.split("\n")[0]), result.stdout[:500]
  helps = dict(re.findall(r"^  --(?:\[no\])?(\w+): (.+)$", result.stdout, re.M))
  assert set(helps) == {"out_dir", "seed", "num_train_videos", "num_val_videos",
                        "num_test_videos", "frames_per_video", "image_size", "num_workers", "overwrite",
                        "contact_sheet"}, helps
  assert all(len(text) > 10 for text in helps.values()), helps


# --- Each AU is a local change where its muscle acts ------------------------------------------


def changed(ident, au, config=synthetic.SyntheticConfig()):
  """(H, W) bool: pixels the AU at full intensity changes on this face (else identical)."""
  neutral = synthetic.render_face(ident, {}, config).astype(int)
  active = synthetic.render_face(ident, {au: 1.0}, config).astype(int)
  return np.abs(active - neutral).max(axis=-1) > CHANGE


IDENTITIES = [synthetic.sample_identity(np.random.default_rng(k)) for k in range(6)]


@pytest.mark.parametrize("ident", IDENTITIES)
@pytest.mark.parametrize("au", aus.AFFWILD2)
def test_each_au_changes_only_its_facial_region(ident, au):
  size = synthetic.SyntheticConfig().image_size
  mask = changed(ident, au)
  ys, xs = np.nonzero(mask)
  y = ys / size  # fractions of the side, as the identity's landmarks
  # Clear at 112x112: a few dozen pixels move visibly, not a one-pixel nudge.
  assert mask.sum() >= 30, mask.sum()
  brow_line = ident.eye_y - ident.brow_gap
  if au in (1, 2, 4):  # brows (and forehead / glabella): above the eye centres
    assert y.max() < ident.eye_y
    assert y.min() > brow_line - 0.2
  elif au == 7:  # lids: the eye band
    assert np.all(np.abs(y - ident.eye_y) < 0.07)
  elif au == 6:  # cheeks and crow's feet: between the eyes' top and the upper lip
    assert y.min() > ident.eye_y - 0.06
    assert y.max() < ident.mouth_y - 0.02
  elif au == 10:  # upper lip, nostrils and nasolabial folds: nose wings down to the mouth
    assert y.min() > ident.nose_y - 0.06
    assert y.max() < ident.mouth_y + 0.06
  else:  # lips, corners and jaw: below the nose
    assert y.min() > ident.nose_y, (au, y.min(), ident.nose_y)


def test_inner_brow_raise_acts_nearer_the_midline_than_outer_brow_raise():
  for ident in IDENTITIES:
    size = synthetic.SyntheticConfig().image_size
    offset = lambda au: np.mean(np.abs(np.nonzero(changed(ident, au))[1] / size
                                       - ident.face_cx))
    assert offset(1) < offset(2) - 0.05


def test_au_regions_differ_between_neighbours():
  # Co-occurring AUs must still be told apart: their changed pixels are not the same set.
  pairs = ((1, 2), (6, 7), (4, 7), (6, 12), (12, 15), (23, 24), (25, 26), (10, 12))
  for ident in IDENTITIES:
    for a, b in pairs:
      ma, mb = changed(ident, a), changed(ident, b)
      jaccard = (ma & mb).sum() / (ma | mb).sum()
      assert jaccard < 0.6, (a, b, jaccard)


def test_render_face_is_a_pure_function():
  ident = IDENTITIES[0]
  intensities = np.linspace(0.0, 1.0, 12)
  a = synthetic.render_face(ident, intensities)
  b = synthetic.render_face(ident, intensities)
  assert a.shape == (112, 112, 3) and a.dtype == np.uint8
  np.testing.assert_array_equal(a, b)


# --- AU statistics: events, co-occurrence, imbalance ------------------------------------------


@pytest.fixture(scope="module")
def scripts():
  config = synthetic.SyntheticConfig()
  return [synthetic.simulate_script(np.random.default_rng(k), 250, config) for k in range(80)]


def present(scripts):
  """(N, 12) bool: AU present (intensity over the label threshold), annotation gaps ignored."""
  threshold = synthetic.SyntheticConfig().events.label_threshold
  return np.concatenate([s.intensities >= threshold for s in scripts])


def column(au):
  return aus.AFFWILD2.index(au)


def test_labels_are_intensity_over_threshold_or_not_annotated(scripts):
  threshold = synthetic.SyntheticConfig().events.label_threshold
  for s in scripts:
    annotated = s.labels != synthetic.NOT_ANNOTATED
    np.testing.assert_array_equal(s.labels[annotated], (s.intensities >= threshold)[annotated])


def test_anatomical_pairs_co_occur(scripts):
  p = present(scripts)
  conditional = lambda a, b: p[p[:, column(b)], column(a)].mean()  # P(a | b)
  marginal = lambda a: p[:, column(a)].mean()
  for a, b in ((12, 6), (26, 25), (25, 26), (2, 1), (1, 2), (23, 24), (7, 4)):
    assert conditional(a, b) > 2 * marginal(a), (a, b)


def test_rare_aus_are_rare_and_common_aus_common(scripts):
  rate = present(scripts).mean(axis=0)
  for au in (15, 23, 24):
    assert 0.02 < rate[column(au)] < 0.09, (au, rate[column(au)])
  for au in (12, 25):
    assert 0.15 < rate[column(au)] < 0.40, (au, rate[column(au)])
  assert max(rate[column(au)] for au in (15, 23, 24)) < 0.5 * min(
      rate[column(au)] for au in (12, 25))


def test_aus_are_events_spanning_several_frames(scripts):
  lengths = []
  for s in scripts:
    p = (s.intensities >= synthetic.SyntheticConfig().events.label_threshold).astype(int)
    for k in range(p.shape[1]):
      edges = np.diff(np.concatenate([[0], p[:, k], [0]]))
      lengths += list(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))
  lengths = np.array(lengths)
  assert np.median(lengths) >= 5
  assert np.mean(lengths >= 3) > 0.95
  # Events last 5-40 frames; only overlapping events of one AU merge into longer runs.
  assert np.mean(lengths <= 40) > 0.9


def test_faces_go_missing_in_short_runs_only(scripts):
  missing = np.concatenate([~s.face_present for s in scripts])
  assert 0.005 < missing.mean() < 0.06


# --- The linear-pixel baseline ----------------------------------------------------------------


def test_linear_baseline_scores_and_chance_f1(tiny):
  result = linear_baseline.fit_and_score(tiny, linear_baseline.LinearConfig(steps=20))
  assert result["aus"] == list(aus.names(aus.AFFWILD2))
  _, labels, num_rows = linear_baseline.read_split(tiny, "validation")
  assert num_rows == 2 * FRAMES and result["num_val"] == len(labels) < num_rows
  # All-positive predictor: TP = P, FP = N, FN = 0, so F1 = 2P / (2P + N).
  for k, name in enumerate(result["aus"]):
    p = np.sum(labels[:, k] == 1)
    n = np.sum(labels[:, k] == 0)
    assert result["chance_f1"][name] == pytest.approx(2 * p / max(2 * p + n, 1))
    assert 0.0 <= result["f1"][name] <= 1.0


def test_f1_pools_counts_over_frames_and_ignores_unannotated():
  labels = np.array([[1], [1], [0], [0], [-1]])
  predictions = np.array([[1], [0], [1], [0], [1]])
  # TP = 1, FP = 1, FN = 1 -> F1 = 2 / 4; the -1 frame counts for nothing.
  # the baseline scores with the project's metric (0/1 predictions against threshold 0.5)
  assert metrics.f1_scores(predictions, labels)[0][0] == pytest.approx(0.5)


# The demo's data stages for one short and one long video pair, after a warm-up pair: the
# peak of generating (frames are written as they are drawn) and of building (TFDS keeps
# encoded examples in its shuffle buffer, spilling to disk past ~1 GB; we decode nothing).
_DATA_STAGES_PEAK = """
import json, pathlib, sys
import rss
from mlt_flax.data import build, synthetic
root = pathlib.Path(sys.argv[1])
out = []
for n in map(int, sys.argv[2:]):
  rss.reset_peak()
  synthetic.generate(root / str(n) / "manual", seed=0, num_train_videos=1, num_val_videos=1,
                     frames_per_video=n)
  generate_mb = rss.peak_mb()
  rss.reset_peak()
  build.build("abaw3_au", str(root / str(n) / "manual"), str(root / str(n) / "tfds"))
  jpeg_mb = sum(p.stat().st_size for p in (root / str(n)).rglob("*.jpg")) / 2**20
  out.append({"generate": generate_mb, "build": rss.peak_mb(), "jpeg": jpeg_mb})
print(json.dumps(out))
"""
DATA_MEMORY_FRAMES = (50, 200, 1500)  # warm-up, short, long (frames per video, 2 videos)
DATA_MEMORY_SLACK_MB = 16


@pytest.mark.slow  # fresh processes measuring peak RSS
def test_generating_and_building_long_videos_keeps_memory_flat(tmp_path):
  _, short, long = rss.measure(_DATA_STAGES_PEAK, tmp_path, *DATA_MEMORY_FRAMES)
  print(f"peak RSS, short -> long videos: generate {short['generate']:.0f} -> "
        f"{long['generate']:.0f} MB, build {short['build']:.0f} -> {long['build']:.0f} MB "
        f"({long['jpeg'] - short['jpeg']:.0f} MB more JPEG)")
  # Decoded, the extra ~2,600 frames would be ~98 MB (112 x 112 x 3 bytes each).
  assert long["generate"] - short["generate"] < DATA_MEMORY_SLACK_MB
  assert long["build"] - short["build"] < long["jpeg"] - short["jpeg"] + DATA_MEMORY_SLACK_MB
