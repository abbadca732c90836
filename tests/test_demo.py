"""The main job's whole story (`make demo`), at test size: every stage runs and reports."""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_demo_runs_every_stage_and_says_where_the_outputs_are(tmp_path):
  # The README's main job, through the real entry point, shrunk by --config overrides.
  data = tmp_path / "data"
  args = [
      "--config=configs/demo.py", f"--workdir={tmp_path / 'run'}", "--mode=demo",
      f"--config.demo.synthetic_dir={data / 'synthetic'}", f"--config.data.data_dir={data / 'tfds'}",
      "--config.demo.num_train_videos=3", "--config.demo.num_val_videos=2",
      "--config.demo.frames_per_video=40", "--config.demo.video=single_face.mp4",
      "--config.demo.video_heatmap_frames=(10,)", "--config.demo.synthetic_heatmap_frames=(5,)",
      "--config.model.small_cnn_widths=(8,16,16)", "--config.model.small_cnn_features=16",
      "--config.model.d_model=16", "--config.model.num_heads=2", "--config.model.mlp_dim=32",
      "--config.train.num_steps=4", "--config.train.eval_every_steps=2",
      "--config.train.checkpoint_every_steps=2", "--config.train.batch_size=16",
      "--config.eval.batch_size=16"]
  r = subprocess.run([sys.executable, "-m", "mlt_flax.main", *args], cwd=ROOT,
                     capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  for stage in ("synthetic AU face videos", "TFDS build", "linear model on raw pixels",
                "training", "evaluation", "predict on a real face video", "summary"):
    assert f"=== {stage}" in r.stdout, stage
  run = tmp_path / "run"
  figures = json.loads((run / "demo_summary.json").read_text())
  for key in ("linear_baseline_mean_f1", "untrained_mean_f1", "mean_f1_fixed_raw",
              "mean_f1_fixed_smoothed", "mean_f1_tuned_raw", "mean_f1_tuned_smoothed"):
    assert 0.0 <= figures[key] <= 1.0, key
  assert (run / "eval_validation" / "f1.png").exists()
  assert (run / "predict_real_video" / "single_face.csv").exists()
  assert (run / "predict_real_video" / "abaw" / "single_face.txt").exists()
  assert (run / "predict_real_video" / "single_face_frame00010_attention.png").exists()
  assert list((run / "predict_synthetic_video").glob("*_attention.png"))
  assert str(run) in r.stdout  # it says where the outputs are
