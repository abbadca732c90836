"""Evaluating a trained run: restore, predict every frame, score four ways, never self-tune."""

import json
import pathlib
import subprocess
import sys

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


def test_fixed_scores_equal_the_metric_on_the_saved_predictions(report):
  rep, out = report
  pred = np.load(out / "predictions.npz")
  _, mean = metrics.f1_scores(pred["probs"], pred["labels"], 0.5)
  assert rep["scores"]["fixed_raw"]["mean"] == pytest.approx(mean)


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


def test_thresholds_are_never_tuned_on_the_frames_they_score(report):
  rep, _ = report
  assert rep["tuned_on"].startswith("cross-video")
  halves = rep["folds"]
  assert [f["split"] for f in halves] == ["validation video half 0", "validation video half 1"]
  assert [f["tuned_on"] for f in halves] == ["validation video half 1",
                                            "validation video half 0"]


def test_tuning_on_a_named_split(trained, tmp_path):
  _, workdir, _ = trained
  rep = evaluate.evaluate(workdir, checkpoint="latest", tune_split="train", out_dir=tmp_path)
  assert rep["tuned_on"] == "train" and rep["checkpoint_step"] == 12
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
