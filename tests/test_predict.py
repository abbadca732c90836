"""predict: a trained checkpoint on raw videos, frame folders and TFDS splits."""

import pathlib
import subprocess
import sys

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
  assert header[:2] == ["frame", "face_found"] and len(header) == 2 + 2 * 12
  assert len(rows) == n == summary["frames"]
  assert [int(r[0]) for r in rows] == list(range(1, n + 1))
  assert summary["frames_with_face"] >= 0.9 * n
  with_face = [r for r in rows if r[1] == "1"]
  assert all(0.0 <= float(p) <= 1.0 for r in with_face for p in r[2:14])
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
  assert len(rows) == summary["frames"] > 0 and all(r[1] == "0" for r in rows)
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
