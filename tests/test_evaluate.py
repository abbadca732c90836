"""Evaluating a trained run: restore, predict every frame, score four ways, never self-tune."""

import json
import pathlib
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from mlt_flax import checkpoints
from mlt_flax import evaluate
from mlt_flax import input_pipeline
from mlt_flax import metrics

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_report_scores_every_frame_of_the_split_four_ways(report, trained):
  # Every example of the built validation split (every labelled frame, with or without a
  # face crop), in (video, frame) order, each once; the strided row counts every k-th face.
  rep, out = report
  config, _, _ = trained
  ds = input_pipeline.builder("abaw3_au", config.data.data_dir).as_dataset(
      split="validation", decoders={"image": tfds.decode.SkipDecoding()})
  examples = [(ex["video"].decode(), int(ex["frame"]), bool(ex["face"]))
              for ex in tfds.as_numpy(ds)]
  frames = sorted((v, f) for v, f, _ in examples)
  assert rep["num_frames"] == len(frames)
  assert rep["secondary"]["strided"]["num_frames"] == sum(
      1 for _, f, face in examples if face and (f - 1) % config.data.frame_stride == 0)
  assert set(rep["scores"]) == {"fixed_raw", "fixed_smoothed", "tuned_raw", "tuned_smoothed"}
  pred = np.load(out / "predictions.npz", allow_pickle=False)
  assert list(zip(pred["video"], pred["frame"])) == frames  # (video, frame) order, each once
  for name in ("report.json", "per_au_f1.csv", "f1.png"):
    assert (out / name).stat().st_size > 0
  csv = (out / "per_au_f1.csv").read_text().splitlines()
  assert len(csv) == 1 + 12 + 1  # header, one row per AU, the mean


def hand_f1(positive, labels):
  """Per-AU F1 and their mean, counted in plain loops: TP, FP and FN pooled over every frame,
  entries labelled -1 left out, 0 where nothing is positive either way."""
  per_au = []
  for t in range(labels.shape[1]):
    tp = fp = fn = 0
    for p, y in zip(positive[:, t], labels[:, t]):
      if y == -1:
        continue
      tp += bool(p) and y == 1
      fp += bool(p) and y == 0
      fn += (not p) and y == 1
    per_au.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
  return per_au, float(np.mean(per_au))


def hand_smooth(probs, video, frame, window):
  """Each row: the mean of its video's rows whose frame lies in [f - w // 2, f + (w - 1) // 2]."""
  out = np.zeros_like(probs, np.float64)
  for i in range(len(probs)):
    near = (video == video[i]) & (frame >= frame[i] - window // 2) & (
        frame <= frame[i] + (window - 1) // 2)
    out[i] = probs[near].mean(axis=0)
  return out


def hand_halves(video):
  """Half of each row: recordings (a video name without _left/_right) alternate, sorted."""
  recording = np.array([v.removesuffix("_left").removesuffix("_right") for v in video])
  names = sorted(set(recording))
  return np.array([names.index(r) % 2 for r in recording])


def thresholds_of(row, names):
  return np.array([row[n] for n in names])


def test_fixed_scores_equal_an_independent_count_on_the_saved_predictions(report, trained):
  rep, out = report
  config, _, _ = trained
  pred = dict(np.load(out / "predictions.npz"))
  per_au, mean = hand_f1(pred["probs"] >= 0.5, pred["labels"])
  assert rep["scores"]["fixed_raw"]["mean"] == pytest.approx(mean, abs=1e-12)
  assert [rep["scores"]["fixed_raw"]["per_au"][n] for n in rep["au_names"]] == pytest.approx(
      per_au, abs=1e-12)
  smoothed = hand_smooth(pred["probs"], pred["video"], pred["frame"], rep["window_fixed"])
  assert rep["scores"]["fixed_smoothed"]["mean"] == pytest.approx(
      hand_f1(smoothed >= 0.5, pred["labels"])[1], abs=1e-12)
  # The tiny run may predict nothing at 0.5 (every F1 0): the same report at a threshold
  # where frames are predicted positive.
  cfg = ml_collections.ConfigDict(config.eval.to_dict())
  cfg.threshold = float(np.median(pred["probs"]))
  again = evaluate.cross_video_report(pred, au_names=rep["au_names"], split="validation",
                                      cfg=cfg)
  per_au, mean = hand_f1(pred["probs"] >= cfg.threshold, pred["labels"])
  assert mean > 0 and again["scores"]["fixed_raw"]["mean"] == pytest.approx(mean, abs=1e-12)
  assert [again["scores"]["fixed_raw"]["per_au"][n] for n in rep["au_names"]] == (
      pytest.approx(per_au, abs=1e-12))


@pytest.mark.parametrize("noise", [0.0, 0.2])
def test_cross_video_tuned_rows_are_each_half_scored_with_the_other_halfs_set(report, trained,
                                                                             noise):
  # Recomputed from the saved predictions: half k's frames thresholded with the set (and
  # window) tuned on half 1 - k, counts pooled over both halves. The tiny run's outputs
  # hardly vary, so that smoothing may not move its thresholds: also on noisy predictions.
  rep, out = report
  config, _, _ = trained
  pred = dict(np.load(out / "predictions.npz"))
  if noise:
    rng = np.random.default_rng(1)
    pred["probs"] = np.clip(pred["probs"] + rng.normal(0, noise, pred["probs"].shape), 0,
                            1).astype(np.float32)
    rep = evaluate.cross_video_report(pred, au_names=rep["au_names"], split="validation",
                                      cfg=config.eval)
    assert any(f["thresholds_tuned_raw"] != f["thresholds_tuned_smoothed"] for f in rep["folds"])
  names, half = rep["au_names"], hand_halves(pred["video"])
  assert set(half) == {0, 1}
  raw = np.zeros(pred["probs"].shape, bool)
  smooth = np.zeros(pred["probs"].shape, bool)
  for k, fold in enumerate(rep["folds"]):
    rows = half == k
    raw[rows] = pred["probs"][rows] >= thresholds_of(fold["thresholds_tuned_raw"], names)
    smoothed = hand_smooth(pred["probs"][rows], pred["video"][rows], pred["frame"][rows],
                           fold["window_tuned"])
    smooth[rows] = smoothed >= thresholds_of(fold["thresholds_tuned_smoothed"], names)
  assert rep["scores"]["tuned_raw"]["mean"] == pytest.approx(
      hand_f1(raw, pred["labels"])[1], abs=1e-12)
  assert rep["scores"]["tuned_smoothed"]["mean"] == pytest.approx(
      hand_f1(smooth, pred["labels"])[1], abs=1e-12)


def test_thresholds_are_never_tuned_on_the_frames_they_score(report, trained):
  # Half k's set depends on half 1 - k's frames only: scramble half 0's predictions and the
  # set that scores half 0 stays; the set tuned on half 0 (scoring half 1) changes.
  rep, out = report
  config, _, _ = trained
  pred = dict(np.load(out / "predictions.npz"))
  half = hand_halves(pred["video"])
  scrambled = dict(pred, probs=pred["probs"].copy())
  rng = np.random.default_rng(0)
  scrambled["probs"][half == 0] = rng.random(((half == 0).sum(), pred["probs"].shape[1]))
  again = evaluate.cross_video_report(scrambled, au_names=rep["au_names"],
                                      split="validation", cfg=config.eval)
  first = evaluate.cross_video_report(pred, au_names=rep["au_names"], split="validation",
                                      cfg=config.eval)
  for key in ("thresholds_tuned_raw", "thresholds_tuned_smoothed", "window_tuned"):
    assert again["folds"][0][key] == first["folds"][0][key] == rep["folds"][0][key]
  assert again["folds"][1]["thresholds_tuned_raw"] != first["folds"][1]["thresholds_tuned_raw"]
  assert [f["tuned_on"] for f in rep["folds"]] == ["validation video half 1",
                                                   "validation video half 0"]


def test_the_report_ships_one_set_and_scores_it_on_its_own_labelled_row(report, capsys):
  # Cross-video: the set tuned on the whole split, scored on the whole split: optimistic,
  # and labelled so; the two-halves rows stay the honest estimate.
  rep, out = report
  shipped = rep["shipped"]
  assert set(shipped) == {"thresholds", "window", "tuned_on", "checkpoint_step", "scored"}
  assert set(shipped["thresholds"]) == set(rep["au_names"])
  assert isinstance(shipped["window"], int) and isinstance(rep["window_tuned"], int)
  assert all(isinstance(f["window_tuned"], int) for f in rep["folds"])
  assert shipped["checkpoint_step"] == rep["checkpoint_step"]
  assert shipped["scored"]["split"] == "validation"
  assert shipped["scored"]["row"] == "optimistic/shipped"
  row = rep["optimistic"]["shipped"]
  assert row["description"].startswith("optimistic: tuned on the frames it scores")
  pred = np.load(out / "predictions.npz")
  probs = pred["probs"] if shipped["window"] == 1 else hand_smooth(
      pred["probs"], pred["video"], pred["frame"], shipped["window"])
  _, mean = hand_f1(probs >= thresholds_of(shipped["thresholds"], rep["au_names"]),
                    pred["labels"])
  assert shipped["scored"]["mean_f1"] == row["mean"] == pytest.approx(mean, abs=1e-12)
  evaluate.print_report(rep)
  printed = capsys.readouterr().out
  assert "optimistic: tuned on the frames it scores" in printed
  assert f"shipped: window {shipped['window']}" in printed


def test_the_strided_row_is_printed_only_when_it_scores_other_frames(report, capsys):
  rep, _ = report
  rep = json.loads(json.dumps(rep))
  for stride, lines in ((5, 2), (1, 1)):
    rep["secondary"]["strided"]["frame_stride"] = stride
    rep["secondary"]["strided"]["description"] = (
        f"frames with a face crop, {evaluate._every(stride)} (the in-training evaluation)")
    evaluate.print_report(rep)
    printed = [l for l in capsys.readouterr().out.splitlines() if l.startswith("secondary")]
    assert len(printed) == lines, printed
  assert evaluate._every(5) == "every 5th frame" and evaluate._every(1) == "every frame"


def test_tuning_on_a_named_split(trained, tmp_path):
  _, workdir, _ = trained
  rep = evaluate.evaluate(workdir, checkpoint="latest", tune_split="train", out_dir=tmp_path)
  assert rep["tuned_on"] == "train" and rep["checkpoint_step"] == 12
  # The shipped set is the one tuned on train, and its row is this split's honest score.
  shipped = rep["shipped"]
  assert shipped["tuned_on"] == "train" and shipped["checkpoint_step"] == 12
  row = shipped["scored"]["row"]
  assert row == ("tuned_raw" if shipped["window"] == 1 else "tuned_smoothed")
  assert shipped["scored"]["mean_f1"] == rep["scores"][row]["mean"]
  assert shipped["thresholds"] == rep["thresholds_tuned_raw" if row == "tuned_raw" else
                                      "thresholds_tuned_smoothed"]
  assert "optimistic" not in rep
  with pytest.raises(ValueError, match="refusing to tune on the reported split"):
    evaluate.evaluate(workdir, tune_split="validation", out_dir=tmp_path)


def test_missing_checkpoint_and_missing_run_are_one_line_errors(trained, tmp_path):
  _, workdir, _ = trained
  with pytest.raises(FileNotFoundError, match="no checkpoint for step 7"):
    evaluate.evaluate(workdir, checkpoint="7", out_dir=tmp_path)
  r = subprocess.run([sys.executable, "-m", "mlt_flax.evaluate", f"--workdir={tmp_path}"],
                     cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert r.returncode != 0 and "Traceback" not in r.stderr
  assert "config.json not found" in r.stderr


def test_checkpoint_for_another_config_is_refused(trained, tmp_path):
  _, workdir, _ = trained
  other = tmp_path / "other"
  other.mkdir()
  (other / "checkpoints").symlink_to(workdir / "checkpoints")
  cfg = json.loads((workdir / "config.json").read_text())
  cfg["model"]["d_model"] = 32
  (other / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(checkpoints.CheckpointError, match="does not fit the run's config"):
    evaluate.evaluate(other, out_dir=tmp_path)


def test_the_paper_protocol_is_a_labelled_optimistic_row(trained, tmp_path, capsys):
  config, workdir, _ = trained
  rep = evaluate.evaluate(workdir, checkpoint="latest", out_dir=tmp_path, protocol="paper")
  paper = rep["optimistic"]["paper"]
  assert paper["description"].startswith("optimistic: tuned on the frames it scores")
  assert paper["window"] in config.eval.paper_windows
  assert set(paper["thresholds"]) == set(rep["au_names"])
  assert "optimistic: tuned on the frames it scores (the paper's protocol" in (
      capsys.readouterr().out)
  stored = json.loads((tmp_path / "report.json").read_text())
  assert stored["optimistic"]["paper"]["mean"] == paper["mean"]
  with pytest.raises(ValueError, match="protocol 'papers'"):
    evaluate.evaluate(workdir, out_dir=tmp_path, protocol="papers")
