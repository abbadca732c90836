"""Evaluation: restore a run's checkpoint, predict a split, score it as the ABAW3 AU track does.

  python -m mlt_flax.evaluate --workdir=DIR [--checkpoint=best|latest|STEP] [--split=validation]
                              [--tune_split=NAME]

Per-AU F1 and mean F1 from TP/FP/FN pooled over every frame, four ways: threshold 0.5 and
per-AU tuned thresholds, each with and without the centred moving-mean smoothing inside each
video. Thresholds and window are NEVER tuned on the frames they score (RECIPE's caution):
with --tune_split=NAME they are tuned on that split; by default the reported split's videos
are cut in two halves and each half is scored with what was tuned on the other
('cross-video'). Writes report.json, per_au_f1.csv and f1.png into <workdir>/eval_<split>/.
"""

import json
import pathlib
import sys

from absl import app
from absl import flags
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from configs import abaw3
from mlt_flax import aus
from mlt_flax import checkpoints
from mlt_flax import input_pipeline
from mlt_flax import metrics
from mlt_flax import models
from mlt_flax import train
from mlt_flax import xla_cpu

CROSS_VIDEO = "cross-video"


def load_config(workdir) -> ml_collections.ConfigDict:
  """The config a run was trained with (<workdir>/config.json).

  Fields added to the project since the run take their defaults from configs/abaw3.py.
  """
  path = pathlib.Path(workdir) / "config.json"
  if not path.exists():
    raise FileNotFoundError(f"{path} not found: is {workdir} the workdir of a training run?")
  config = abaw3.get_config()
  _merge(config, json.loads(path.read_text()))
  return config


def _merge(config: ml_collections.ConfigDict, stored: dict) -> None:
  for key, value in stored.items():
    if isinstance(value, dict) and key in config and isinstance(config[key],
                                                                 ml_collections.ConfigDict):
      _merge(config[key], value)
    else:
      with config.ignore_type():
        config[key] = tuple(value) if isinstance(value, list) else value


def restore_variables(workdir, config, which: str = "best", dp=None):
  """The model variables {'params', 'batch_stats'} of a run's checkpoint, replicated.

  which: 'best' (by validation mean F1; the latest if none was evaluated), 'latest' or a step.
  """
  dp = dp or train.DataParallel()
  mngr = checkpoints.manager(workdir, config)
  steps = mngr.all_steps()
  if not steps:
    raise FileNotFoundError(f"no checkpoint in {pathlib.Path(workdir) / 'checkpoints'}")
  if which == "best":
    step = mngr.best_step() if mngr.best_step() is not None else mngr.latest_step()
  elif which == "latest":
    step = mngr.latest_step()
  else:
    step = int(which)
    if step not in steps:
      raise FileNotFoundError(f"no checkpoint for step {step} in {mngr.directory}; "
                              f"there are {sorted(steps)}")
  abstract = train.abstract_state(config, dp)
  try:
    restored = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract)))
  except Exception as e:  # pylint: disable=broad-except
    raise checkpoints.CheckpointError(
        f"checkpoint step {step} in {mngr.directory} does not fit the run's config "
        f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from e
  state = restored["state"]
  return {"params": state.params, "batch_stats": state.batch_stats}, step


def predict_split(config, variables, *, dataset=None, split=None, dp=None) -> dict:
  """Probabilities for every (strided) frame of a split, rows sorted by (video, frame).

  Returns {'probs': (N, L), 'labels': (N, L), 'video': (N,) str, 'frame': (N,) int}.
  """
  dp = dp or train.DataParallel()
  model = models.build_model(config.model, len(aus.label_space(config.data.label_space)))
  predict = dp.map(lambda v, b: train.predict_step(v, b, model=model, config=config),
                   out_specs=jax.P(train.AXIS), donate_state=False)
  local_batch = dp.local_batch_size(config.eval.batch_size, "eval.batch_size")
  out = {"probs": [], "labels": [], "video": [], "frame": []}
  for batch in input_pipeline.eval_batches(
      config, local_batch_size=local_batch, dataset=dataset, split=split,
      process_index=jax.process_index(), process_count=jax.process_count()):
    probs = predict(variables, dp.to_global(batch))
    local = np.concatenate([np.asarray(s.data) for s in sorted(
        probs.addressable_shards, key=lambda s: s.index[0].start or 0)])
    keep = batch["valid"]
    out["probs"].append(local[keep])
    out["labels"].append(batch["labels"][keep])
    out["video"].append(np.array([v.decode() for v in batch["video"][keep]], object))
    out["frame"].append(batch["frame"][keep])
  arrays = {k: np.concatenate(v) for k, v in out.items()}
  order = np.lexsort((arrays["frame"], arrays["video"].astype(str)))
  return {k: v[order] for k, v in arrays.items()}


def in_rows(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """config.eval with its smoothing windows converted from frames to rows of the split.

  Windows are in video frames (the paper's w_s = 20); with every k-th frame kept, a window of
  w frames spans w / k rows.
  """
  cfg = ml_collections.ConfigDict(config.eval.to_dict())
  rows = lambda w: max(1, round(w / config.data.frame_stride))
  cfg.smoothing_window = rows(cfg.smoothing_window)
  cfg.smoothing_windows = tuple(sorted({rows(w) for w in cfg.smoothing_windows}))
  return cfg


def cross_video_report(pred: dict, *, au_names, split: str, cfg) -> dict:
  """Scores `pred`, each half of its videos with thresholds/window tuned on the other half."""
  videos = np.unique(pred["video"].astype(str))
  if len(videos) < 2:
    raise ValueError(f"split {split!r} has {len(videos)} video(s): cross-video tuning needs two "
                     "or more; pass --tune_split")
  fold_of = {v: i % 2 for i, v in enumerate(videos)}
  fold = np.array([fold_of[v] for v in pred["video"].astype(str)])
  shifted_raw = np.zeros_like(pred["probs"], np.float64)
  shifted_smooth = np.zeros_like(shifted_raw)
  folds = []
  for k in (0, 1):
    rep, tun = fold == k, fold != k
    tuning = metrics.tune_split(pred["probs"][tun], pred["labels"][tun], pred["video"][tun],
                                tuned_on=f"{split} video half {1 - k}",
                                windows=cfg.smoothing_windows, grid_step=cfg.threshold_grid_step)
    folds.append(metrics.evaluation_report(
        pred["probs"][rep], pred["labels"][rep], pred["video"][rep], au_names=au_names,
        window=cfg.smoothing_window, split=f"{split} video half {k}", tuning=tuning,
        threshold=cfg.threshold))
    # p >= t  <=>  p - t + threshold >= threshold: one fixed threshold scores both halves.
    shifted_raw[rep] = pred["probs"][rep] - tuning.thresholds_raw + cfg.threshold
    smoothed = metrics.smooth(pred["probs"][rep], pred["video"][rep], tuning.window)
    shifted_smooth[rep] = smoothed - tuning.thresholds_smoothed + cfg.threshold

  def scored(probs):
    per_au, mean = metrics.f1_scores(probs, pred["labels"], cfg.threshold)
    return {"per_au": dict(zip(au_names, map(float, per_au))), "mean": float(mean)}

  smoothed_fixed = metrics.smooth(pred["probs"], pred["video"], cfg.smoothing_window)
  mean_over_folds = lambda key: {au: float(np.mean([f[key][au] for f in folds]))
                                 for au in au_names}
  return {
      "split": split,
      "tuned_on": f"{CROSS_VIDEO} ({split} videos in two halves, each scored with thresholds "
                  "and window tuned on the other)",
      "au_names": list(au_names),
      "num_frames": int(len(pred["probs"])),
      "num_videos": int(len(videos)),
      "threshold_fixed": cfg.threshold,
      "window_fixed": cfg.smoothing_window,
      "window_tuned": [f["window_tuned"] for f in folds],
      "thresholds_tuned_raw": mean_over_folds("thresholds_tuned_raw"),
      "thresholds_tuned_smoothed": mean_over_folds("thresholds_tuned_smoothed"),
      "scores": {"fixed_raw": scored(pred["probs"]), "fixed_smoothed": scored(smoothed_fixed),
                 "tuned_raw": scored(shifted_raw), "tuned_smoothed": scored(shifted_smooth)},
      "folds": folds,
  }


def evaluate(workdir, *, checkpoint: str = "best", split: str | None = None,
             tune_split: str = "", out_dir=None) -> dict:
  """Scores a run's checkpoint on a split; writes and returns the report."""
  config = load_config(workdir)
  split = split or config.data.eval_split
  au_names = aus.names(aus.label_space(config.data.label_space))
  dp = train.DataParallel()
  variables, step = restore_variables(workdir, config, checkpoint, dp)
  pred = predict_split(config, variables, split=split, dp=dp)
  cfg = in_rows(config)
  if tune_split:
    tune = predict_split(config, variables, split=tune_split, dp=dp)
    report = metrics.evaluation_report(
        pred["probs"], pred["labels"], pred["video"], au_names=au_names,
        window=cfg.smoothing_window, split=split,
        tune=(tune["probs"], tune["labels"], tune["video"]), tuned_on=tune_split,
        windows=cfg.smoothing_windows, grid_step=cfg.threshold_grid_step,
        threshold=cfg.threshold)
  else:
    report = cross_video_report(pred, au_names=au_names, split=split, cfg=cfg)
  report["frame_stride"] = config.data.frame_stride  # windows above are in rows = frames / this
  report["checkpoint_step"] = int(step)
  out_dir = pathlib.Path(out_dir or pathlib.Path(workdir) / f"eval_{split}")
  if jax.process_index() == 0:
    metrics.write_report(report, out_dir)
    metrics.plot_report(report, out_dir / "f1.png")
    np.savez_compressed(out_dir / "predictions.npz", **{k: np.asarray(v) for k, v in
                                                          pred.items() if k != "video"},
                        video=pred["video"].astype(str))
  print_report(report)
  print(f"wrote {out_dir}/report.json, per_au_f1.csv, f1.png")
  return report


def print_report(report: dict) -> None:
  names = report["au_names"]
  print(f"split {report['split']} ({report['num_frames']} frames, {report['num_videos']} "
        f"videos), checkpoint step {report.get('checkpoint_step')}; tuned on "
        f"{report['tuned_on']}")
  print("scoring".ljust(16) + "".join(n.rjust(6) for n in names) + "  mean")
  for scoring, s in report["scores"].items():
    print(scoring.ljust(16) + "".join(f"{s['per_au'][n]:6.3f}" for n in names) +
          f"  {s['mean']:.3f}")


FLAGS = flags.FLAGS


def define_flags():
  """The CLI's flags (defined only when run as a program, so modules can import each other)."""
  flags.DEFINE_string("workdir", None, "The training run's workdir.")
  flags.DEFINE_string("checkpoint", "best", "'best', 'latest' or a step number.")
  flags.DEFINE_string("split", None, "Split to report (default: the config's eval_split).")
  flags.DEFINE_string("tune_split", "", "Split to tune thresholds/window on; '' = cross-video.")
  flags.DEFINE_string("out_dir", None, "Where to write the report (default <workdir>/eval_<split>).")


def main(argv):
  del argv
  xla_cpu.apply_defaults()  # before anything starts JAX's backend
  try:
    evaluate(FLAGS.workdir, checkpoint=FLAGS.checkpoint, split=FLAGS.split,
             tune_split=FLAGS.tune_split, out_dir=FLAGS.out_dir)
  except (FileNotFoundError, ValueError, checkpoints.CheckpointError) as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["workdir"])
  app.run(main)
