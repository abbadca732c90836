"""The ABAW3 AU track's protocol: what the report's F1 means.

The challenge scores every frame of every validation video that has labels, at full frame
rate; a submission predicts every frame, also those without a face crop, and its smoothing
runs over frame numbers within a video. The mean F1 is over the AUs the split annotates.
"""

import json
import pathlib

import jax
import numpy as np
import pytest

from conftest import loop_config
from mlt_flax import evaluate
from mlt_flax import metrics
from mlt_flax import predict
from mlt_flax import runtime
from mlt_flax import train
from mlt_flax.data import affwild2_format


def labelled_frames(manual: pathlib.Path, split_folder: str) -> dict[str, list[int]]:
  """video -> the frame numbers its challenge label file has a line for."""
  out = {}
  for path in sorted((manual / affwild2_format.LABELS_FOLDER / split_folder).glob("*.txt")):
    out[path.stem] = list(range(1, len(path.read_text().splitlines())))  # header + N lines
  return out


def face_frames(manual: pathlib.Path, video: str) -> set[int]:
  return {int(p.stem) for p in (manual / affwild2_format.IMAGES_FOLDER / video).glob("*.jpg")}


def test_the_report_scores_every_labelled_frame_faceless_ones_included(report, synthetic_tfds):
  rep, out = report
  manual = pathlib.Path(synthetic_tfds).parent / "manual"
  expected = labelled_frames(manual, "Validation_Set")
  pred = np.load(out / "predictions.npz")
  got = {}
  for v, f in zip(pred["video"], pred["frame"]):
    got.setdefault(str(v), []).append(int(f))
  assert got == expected  # every line of every label file, at full frame rate
  faceless = sum(len(set(frames) - face_frames(manual, v)) for v, frames in expected.items())
  assert faceless > 0  # the fixture has frames without a face crop
  assert rep["protocol"]["faceless_frames"] == faceless == int((~pred["face"]).sum())
  assert rep["protocol"]["num_frames"] == rep["num_frames"] == sum(map(len, expected.values()))
  assert rep["protocol"]["name"] == "challenge"


def test_faceless_frames_score_the_prediction_the_submission_gives_them(report):
  _, out = report
  pred = np.load(out / "predictions.npz")
  filled = metrics.fill_faceless(pred["probs"], pred["face"], pred["video"], pred["frame"])
  np.testing.assert_array_equal(pred["probs"], filled)  # what was scored is already filled
  for i in np.flatnonzero(~pred["face"])[:20]:
    same = np.flatnonzero((pred["video"] == pred["video"][i]) & pred["face"])
    nearest = same[np.argmin(np.abs(pred["frame"][same] - pred["frame"][i]))]
    np.testing.assert_array_equal(pred["probs"][i], pred["probs"][nearest])


def test_secondary_rows_are_labelled_with_their_frames_and_stride(report, trained):
  rep, _ = report
  config, _, _ = trained
  faces, strided = rep["secondary"]["face_crops"], rep["secondary"]["strided"]
  assert faces["num_frames"] == rep["num_frames"] - rep["protocol"]["faceless_frames"]
  assert strided["frame_stride"] == config.data.frame_stride
  assert "every" in strided["description"] and "face crop" in faces["description"]
  assert strided["num_frames"] < faces["num_frames"] < rep["num_frames"]


def test_smoothing_spans_frame_numbers_not_rows():
  # Frames 1, 6, 11, ... (a strided split): a 20-frame window holds 4 rows, not 20.
  frames = np.arange(1, 200, 5)
  probs = np.random.default_rng(0).random((len(frames), 2))
  video = np.zeros(len(frames), int)
  got = metrics.smooth(probs, video, 20, frames=frames)
  for i, f in enumerate(frames):
    window = (frames >= f - 10) & (frames <= f + 9)  # 10 back, 9 forward
    np.testing.assert_allclose(got[i], probs[window].mean(0))


def test_predict_on_a_tfds_split_writes_every_labelled_frame(trained, synthetic_tfds, tmp_path):
  _, workdir, _ = trained
  manual = pathlib.Path(synthetic_tfds).parent / "manual"
  expected = labelled_frames(manual, "Validation_Set")
  predict.predict(workdir, "tfds:validation", tmp_path, smooth=True, abaw=True)
  for video, frames in expected.items():
    rows = (tmp_path / f"{video}.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == frames
    faces = {int(r.split(",")[0]) for r in rows if r.split(",")[1] == "1"}
    assert faces == face_frames(manual, video) & set(frames)
    abaw = (tmp_path / "abaw" / f"{video}.txt").read_text().splitlines()
    assert len(abaw) == 1 + len(frames)  # the submission's line for every frame


def test_two_faces_of_one_recording_stay_in_one_tuning_half():
  videos = ["a_left"] * 3 + ["a_right"] * 2 + ["b"] * 2 + ["c_left", "c_right", "d"]
  halves = evaluate.recording_halves(videos)
  by_video = dict(zip(videos, halves))
  assert by_video["a_left"] == by_video["a_right"] and by_video["c_left"] == by_video["c_right"]
  assert set(halves) == {0, 1}
  with pytest.raises(ValueError, match="1 recording"):
    evaluate.recording_halves(["x_left", "x_right"])


def test_a_17_au_model_is_scored_on_the_aus_the_split_annotates(synthetic_tfds):
  # Pretraining on the 17-AU union, validating on Aff-Wild2: its 5 missing AUs are not
  # scored zeros in the mean, they are left out (and the keys say which AUs count).
  config = loop_config(synthetic_tfds)
  config.data.label_space = "union17"
  config.augment.mixup = False
  dp = runtime.DataParallel()
  model, _, tx = runtime.build(config, 1)
  state = jax.jit(lambda: runtime.create_train_state(0, model, tx, config.model.image_size),
                  out_shardings=dp.replicated)()
  scores = train.evaluate_f1(runtime.predict_fn(config, dp), state, config, dp)
  per_au = {k: v for k, v in scores.items() if k.startswith("val_f1/")}
  assert sorted(per_au) == sorted(f"val_f1/AU{a}" for a in (1, 2, 4, 6, 7, 10, 12, 15, 23, 24,
                                                           25, 26))
  assert scores["mean_f1"] == pytest.approx(np.mean(list(per_au.values())))
