"""The main job's whole story (`make demo`), at test size: every stage runs and reports."""

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
  """The README's main job, through the real entry point, shrunk by --config overrides."""
  tmp_path = tmp_path_factory.mktemp("demo")
  data = tmp_path / "data"
  args = [
      "--config=configs/demo.py", f"--workdir={tmp_path / 'run'}", "--mode=demo",
      f"--config.demo.synthetic_dir={data / 'synthetic'}", f"--config.data.data_dir={data / 'tfds'}",
      "--config.demo.num_train_videos=3", "--config.demo.num_val_videos=4",
      "--config.demo.frames_per_video=40", "--config.demo.video=single_face.mp4",
      "--config.demo.video_heatmap_frames=(10,)", "--config.demo.synthetic_heatmap_frames=(5,)",
      "--config.model.small_cnn_widths=(8,16,16)", "--config.model.small_cnn_features=16",
      "--config.model.d_model=16", "--config.model.num_heads=2", "--config.model.mlp_dim=32",
      "--config.train.num_steps=4", "--config.train.eval_every_steps=2",
      "--config.train.checkpoint_every_steps=2", "--config.train.batch_size=16",
      "--config.eval.batch_size=16", "--config.demo.reference_steps=4"]
  r = subprocess.run([sys.executable, "-m", "mlt_flax.main", *args], cwd=ROOT,
                     capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  return r, tmp_path / "run"


@pytest.mark.slow  # the main job end to end, in a subprocess
def test_demo_runs_every_stage_and_says_where_the_outputs_are(demo_run):
  r, run = demo_run
  for stage in ("synthetic AU face videos", "TFDS build", "linear model on raw pixels",
                "training", "evaluation", "predict on a real face video", "summary"):
    assert f"=== {stage}" in r.stdout, stage
  assert "plain-CNN reference: 4 steps; best validation mean F1" in r.stdout
  figures = json.loads((run / "demo_summary.json").read_text())
  # The summary's figures are the evaluation report's and the baseline's, and it prints them.
  report = json.loads((run / "eval_validation" / "report.json").read_text())
  for key, scoring in (("mean_f1_fixed_raw", "fixed_raw"), ("mean_f1_tuned_raw", "tuned_raw"),
                       ("mean_f1_fixed_smoothed", "fixed_smoothed"),
                       ("mean_f1_tuned_smoothed", "tuned_smoothed")):
    assert figures[key] == report["scores"][scoring]["mean"], key
  assert figures["face_crops_mean_f1_fixed_raw"] == (
      report["secondary"]["face_crops"]["fixed_raw"]["mean"])
  assert figures["num_frames"] == report["num_frames"] > figures["face_crop_frames"]
  baseline = json.loads((run / "linear_baseline.json").read_text())
  assert figures["linear_baseline_mean_f1"] == baseline["mean_f1"]
  untrained = json.loads((run / "untrained_eval.json").read_text())
  assert figures["untrained_mean_f1"] == untrained["mean_f1"]
  summary_text = r.stdout[r.stdout.index("=== summary"):]
  # The reference trained on the same frames, and its best evaluation is what the table shows.
  reference = json.loads((run / "plain_cnn" / "summary.json").read_text())
  assert reference["steps"] == figures["plain_cnn_train_steps"] == 4
  assert figures["plain_cnn_mean_f1"] == max(p["val_mean_f1"] for p in reference["evaluations"])
  for key in ("linear_baseline_mean_f1", "plain_cnn_mean_f1", "untrained_mean_f1",
              "mean_f1_fixed_raw",
              "mean_f1_tuned_smoothed", "face_crops_mean_f1_fixed_raw"):
    assert f"{figures[key]:.3f}" in summary_text, key
  assert "challenge protocol" in summary_text
  assert (run / "eval_validation" / "f1.png").exists()
  assert (run / "predict_real_video" / "single_face.csv").exists()
  assert (run / "predict_real_video" / "abaw" / "single_face.txt").exists()
  assert (run / "predict_real_video" / "single_face_frame00010_attention.png").exists()
  assert list((run / "predict_synthetic_video").glob("*_attention.png"))
  assert str(run) in r.stdout  # it says where the outputs are


@pytest.mark.slow  # the main job end to end, in a subprocess
def test_demo_terminal_is_a_short_story_and_the_full_log_is_in_the_workdir(demo_run):
  r, run = demo_run
  lines = (r.stdout + r.stderr).splitlines()
  assert len(lines) <= 80, "\n".join(lines)
  assert "Warning" not in r.stderr and "os.fork()" not in r.stderr, r.stderr[-3000:]
  assert "INFO" not in r.stdout + r.stderr  # library INFO lines go to the log file
  log = (run / "log.txt").read_text()
  assert "INFO" in log and "orbax" in log.lower()


def test_a_rerun_leaves_the_generated_videos_and_the_built_dataset_as_they_are(tmp_path,
                                                                              capsys):
  # The data stages of the demo are skipped when their output is there: not a file of the
  # generated videos or of the TFDS build is written again.
  from configs import demo as demo_config  # pylint: disable=g-import-not-at-top
  from mlt_flax import demo  # pylint: disable=g-import-not-at-top
  config = demo_config.get_config()
  d = config.demo
  d.synthetic_dir, config.data.data_dir = str(tmp_path / "synthetic"), str(tmp_path / "tfds")
  d.num_train_videos, d.num_val_videos, d.frames_per_video, d.num_workers = 1, 1, 8, 1
  demo.prepare_data(config)
  written = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
  assert any(p.suffix == ".jpg" for p in written) and any("tfrecord" in p.name for p in written)
  capsys.readouterr()
  demo.prepare_data(config)
  assert "already built" in capsys.readouterr().out
  assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == written
