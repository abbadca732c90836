"""Evaluation: a run's checkpoint, scored the way the ABAW3 AU track scores a submission.

  python -m mlt_flax.evaluate --workdir=DIR [--checkpoint=best|latest|STEP] [--split=validation]
                              [--tune_split=NAME] [--protocol=challenge|paper]

The protocol (the challenge's; docs/recipe.md, "Evaluation (ABAW3 AU track)"): every
labelled frame of every video of the split, at full frame rate, including the frames that
have no face crop, which take the prediction of the nearest frame with one (as the
submission writer, `predict --abaw`, gives them); smoothing is the centred moving mean over
frame numbers within each video; per-AU F1 from TP/FP/FN pooled over every frame; the mean
over the AUs the split annotates. Four scorings: threshold 0.5 and per-AU tuned thresholds,
each with and without smoothing. Thresholds and window are NEVER tuned on the frames they
score: with --tune_split=NAME they are tuned on that split; by default the split's
recordings are cut in two halves and each half is scored with what was tuned on the other
('cross-video'; the two faces of a two-person recording stay in one half).

The report's "shipped" entry is the ONE set of per-AU thresholds and window (1 = no smoothing)
a user should ship (predict and export read it): with --tune_split, the set tuned on that
split, scored on this one (honest); cross-video, the set tuned on the whole split, scored on
its own row labelled "optimistic: tuned on the frames it scores" (the halves' rows stay the
honest estimate). --protocol=paper adds the authors' figure, tuned on the frames it scores,
on a row labelled the same way.

Secondary rows, labelled as such: the frames with a face crop only, and every k-th of them
(k = config.data.frame_stride: the in-training evaluation). Writes report.json,
per_au_f1.csv, f1.png and predictions.npz into <workdir>/eval_<split>/.
"""

if __name__ == "__main__":  # as a program: TensorFlow loads with its start-up lines
  from mlt_flax import console as _console  # kept off the terminal, before any import
  _console.quiet_native_logs()  # pulls it in (console.quiet_native_logs says why)

import pathlib

from absl import flags
import jax
import numpy as np

from mlt_flax import cli
from mlt_flax import metrics
from mlt_flax import plots
from mlt_flax import reports
from mlt_flax import runtime
from mlt_flax import tuning
from mlt_flax.data import affwild2_format

CROSS_VIDEO = "cross-video"
OPTIMISTIC = "optimistic: tuned on the frames it scores"
SHIPPED_ROW = "shipped"
PROTOCOLS = ("challenge", "paper")
PAPER_PROTOCOL = ("the authors' (src/abaw3_utils.py): thresholds np.linspace(0, 1, {n}) and "
                  "window {windows} tuned on the reported split; faceless rows keep their "
                  "placeholder's prediction in the moving sum and are left out of its count; "
                  "'SAME' window alignment (even windows one frame further forward)")
CHALLENGE_PROTOCOL = ("challenge: every labelled frame at full frame rate; frames without a "
                      "face crop take the nearest face frame's prediction; smoothing over "
                      "frame numbers within each video")


def recording_halves(videos) -> np.ndarray:
  """Half 0 or 1 of each row's video: recordings alternate between halves in sorted order.

  The two faces of a two-person recording ('<name>_left', '<name>_right') are one recording
  and land in the same half: tuning on one face and scoring the other would leak.
  """
  recordings = np.array([affwild2_format.subject_of(v) for v in np.asarray(videos, str)])
  names = np.unique(recordings)
  if len(names) < 2:
    raise ValueError(f"{len(names)} recording(s): cross-video tuning needs two or more; "
                     "pass --tune_split")
  return np.searchsorted(names, recordings) % 2


def cross_video_report(pred: dict, *, au_names, split: str, cfg,
                       checkpoint_step: int = -1) -> dict:
  """Scores `pred`, each half of its recordings with thresholds/window tuned on the other.

  pred: {'probs', 'labels', 'video', 'frame'}, rows sorted by (video, frame); cfg: config.eval;
  checkpoint_step: the step the predictions are of, for the "shipped" entry (the set tuned
  on the whole split, scored on its own optimistic row).
  """
  video = pred["video"].astype(str)
  try:
    fold = recording_halves(video)
  except ValueError as e:
    raise ValueError(f"split {split!r}: {e}") from e
  probs, labels, frames = pred["probs"], pred["labels"], pred["frame"]
  shifted_raw = np.zeros_like(probs, np.float64)
  shifted_smooth = np.zeros_like(shifted_raw)
  folds = []
  for k in (0, 1):
    rep, tun = fold == k, fold != k
    tuned = tuning.tune_split(probs[tun], labels[tun], video[tun],
                              tuned_on=f"{split} video half {1 - k}",
                              windows=cfg.smoothing_windows, grid_step=cfg.threshold_grid_step,
                              frames=frames[tun])
    folds.append(reports.evaluation_report(
        probs[rep], labels[rep], video[rep], au_names=au_names,
        window=cfg.smoothing_window, split=f"{split} video half {k}", tuning=tuned,
        threshold=cfg.threshold, frames=frames[rep]))
    # p >= t  <=>  p - t + threshold >= threshold: one fixed threshold scores both halves.
    shifted_raw[rep] = probs[rep] - tuned.thresholds_raw + cfg.threshold
    smoothed = metrics.smooth(probs[rep], video[rep], tuned.window, frames=frames[rep])
    shifted_smooth[rep] = smoothed - tuned.thresholds_smoothed + cfg.threshold

  def scored(p, thresholds=cfg.threshold):
    return reports.scored(p, labels, thresholds, au_names)

  smoothed_fixed = metrics.smooth(probs, video, cfg.smoothing_window, frames=frames)
  # What a user ships: the set tuned on the whole split. Its score on the same frames is
  # optimistic, and labelled so; the honest estimate of it is the two halves' rows above.
  whole = tuning.tune_split(probs, labels, video, tuned_on=f"{split} (all its recordings)",
                            windows=cfg.smoothing_windows, grid_step=cfg.threshold_grid_step,
                            frames=frames)
  window, thresholds = whole.shipped()
  shipped_probs = (probs if window == 1 else smoothed_fixed if window == cfg.smoothing_window
                   else metrics.smooth(probs, video, window, frames=frames))
  shipped_row = scored(shipped_probs, thresholds)
  return {
      "split": split,
      "tuned_on": f"{CROSS_VIDEO} ({split} recordings in two halves, each scored with "
                  "thresholds and window tuned on the other)",
      "au_names": list(au_names),
      "num_frames": int(len(probs)),
      "num_videos": int(len(np.unique(video))),
      "threshold_fixed": cfg.threshold,
      "window_fixed": cfg.smoothing_window,
      # The whole split's tuning (the shipped set's); each half's own is in "folds".
      "window_tuned": int(whole.window),
      "thresholds_tuned_raw": dict(zip(au_names, map(float, whole.thresholds_raw))),
      "thresholds_tuned_smoothed": dict(zip(au_names, map(float, whole.thresholds_smoothed))),
      "scores": {"fixed_raw": scored(probs), "fixed_smoothed": scored(smoothed_fixed),
                 "tuned_raw": scored(shifted_raw), "tuned_smoothed": scored(shifted_smooth)},
      "folds": folds,
      "optimistic": {SHIPPED_ROW: {
          "description": f"{OPTIMISTIC} (the shipped set: window {window}, thresholds tuned "
                         f"on all of {split})",
          "window": int(window), **shipped_row}},
      "shipped": shipped_entry(whole, au_names, checkpoint_step=checkpoint_step, split=split,
                               row=f"optimistic/{SHIPPED_ROW}", mean_f1=shipped_row["mean"]),
  }


def challenge_view(pred: dict, columns) -> dict:
  """The split as the challenge scores it: the scored AUs' columns, and faceless frames
  given the nearest face frame's prediction."""
  probs = metrics.fill_faceless(pred["probs"], pred["face"], pred["video"], pred["frame"])
  return {**pred, "probs": probs[:, columns], "labels": pred["labels"][:, columns]}


def _every(stride: int) -> str:
  return "every frame" if stride == 1 else f"every {stride}th frame"


def secondary_scores(view: dict, keep: np.ndarray, *, au_names, cfg, description: str) -> dict:
  """Threshold-0.5 scores on a subset of the frames, raw and smoothed (over frame numbers)."""
  p, y = view["probs"][keep], view["labels"][keep]
  smoothed = metrics.smooth(p, view["video"][keep], cfg.smoothing_window,
                            frames=view["frame"][keep])
  out = {"description": description, "num_frames": int(keep.sum())}
  for name, probs in (("fixed_raw", p), ("fixed_smoothed", smoothed)):
    out[name] = reports.scored(probs, y, cfg.threshold, au_names)
  return out


def shipped_entry(tuned: tuning.Tuning, au_names, *, checkpoint_step: int, split: str,
                  row: str, mean_f1: float) -> dict:
  """report["shipped"]: the one set of thresholds and window a user should ship, and the row
  of the report that scores it (docs/recipe.md, "What is shipped")."""
  window, thresholds = tuned.shipped()
  return {"thresholds": dict(zip(au_names, map(float, thresholds))), "window": int(window),
          "tuned_on": tuned.tuned_on, "checkpoint_step": int(checkpoint_step),
          "scored": {"split": split, "row": row, "mean_f1": float(mean_f1)}}


def paper_report(pred: dict, columns, *, au_names, cfg) -> dict:
  """The authors' evaluation of the split (`tuning.paper_protocol`), labelled optimistic."""
  result = tuning.paper_protocol(
      pred["probs"][:, columns], pred["labels"][:, columns], pred["video"].astype(str),
      pred["frame"], pred["face"], windows=cfg.paper_windows,
      num_thresholds=cfg.paper_num_thresholds)
  return {"description": f"{OPTIMISTIC} (the paper's protocol: " + PAPER_PROTOCOL.format(
              n=cfg.paper_num_thresholds, windows=list(cfg.paper_windows)) + ")",
          "window": result["window"],
          "thresholds": dict(zip(au_names, map(float, result["thresholds"]))),
          "per_au": dict(zip(au_names, map(float, result["per_au"]))),
          "mean": result["mean"]}


def evaluate(workdir, *, checkpoint: str = "best", split: str | None = None,
             tune_split: str = "", out_dir=None, protocol: str = "challenge") -> dict:
  """Scores a run's checkpoint on a split (the challenge protocol); writes the report.

  protocol 'paper' adds the authors' figure (`paper_report`), labelled optimistic."""
  if protocol not in PROTOCOLS:
    raise ValueError(f"protocol {protocol!r}: expected one of {PROTOCOLS}")
  dp = runtime.DataParallel()
  run = runtime.load_run(workdir, checkpoint, dp)
  config, cfg = run.config, run.config.eval
  split = split or config.data.eval_split
  columns, au_names = runtime.scored_aus(config)
  predict = runtime.predict_fn(config, dp)
  pred = runtime.predict_split(run, split, dp, predict=predict, frame_stride=1, faceless=True)
  view = challenge_view(pred, columns)
  if tune_split:
    tune = challenge_view(runtime.predict_split(run, tune_split, dp, predict=predict,
                                                frame_stride=1, faceless=True), columns)
    tuned = tuning.tune_split(tune["probs"], tune["labels"], tune["video"].astype(str),
                              tuned_on=tune_split, windows=cfg.smoothing_windows,
                              grid_step=cfg.threshold_grid_step, frames=tune["frame"])
    report = reports.evaluation_report(
        view["probs"], view["labels"], view["video"].astype(str), au_names=au_names,
        window=cfg.smoothing_window, split=split, tuning=tuned, threshold=cfg.threshold,
        frames=view["frame"])
    row = "tuned_smoothed" if tuned.shipped()[0] > 1 else "tuned_raw"
    report["shipped"] = shipped_entry(tuned, au_names, checkpoint_step=run.step, split=split,
                                      row=row, mean_f1=report["scores"][row]["mean"])
  else:
    report = cross_video_report(view, au_names=au_names, split=split, cfg=cfg,
                                checkpoint_step=run.step)
  if protocol == "paper":
    report.setdefault("optimistic", {})["paper"] = paper_report(pred, columns,
                                                                au_names=au_names, cfg=cfg)
  face, stride = view["face"], config.data.frame_stride
  report["protocol"] = {
      "name": "challenge", "description": CHALLENGE_PROTOCOL, "frame_stride": 1,
      "num_frames": int(len(face)), "faceless_frames": int((~face).sum()),
      "aus": f"the {len(au_names)} AUs {config.data.eval_dataset} annotates",
  }
  report["secondary"] = {
      "face_crops": secondary_scores(
          view, face, au_names=au_names, cfg=cfg,
          description="frames with a face crop only, every frame"),
      "strided": secondary_scores(
          view, face & ((view["frame"] - 1) % stride == 0), au_names=au_names, cfg=cfg,
          description=f"frames with a face crop, {_every(stride)} (the in-training "
                      "evaluation)"),
  }
  report["secondary"]["strided"]["frame_stride"] = stride
  report["checkpoint_step"] = int(run.step)
  out_dir = pathlib.Path(out_dir or pathlib.Path(workdir) / f"eval_{split}")
  if jax.process_index() == 0:
    reports.write_report(report, out_dir)
    plots.plot_report(report, out_dir / "f1.png")
    np.savez_compressed(out_dir / "predictions.npz",
                        probs=view["probs"], labels=view["labels"], face=view["face"],
                        frame=view["frame"], video=view["video"].astype(str))
    print_report(report)
    print(f"wrote {out_dir}/report.json, per_au_f1.csv, f1.png")
  return report


def print_report(report: dict) -> None:
  """The challenge-protocol mean F1 first, then per AU, then the labelled secondary rows."""
  names, protocol, s = report["au_names"], report["protocol"], report["scores"]
  print(f"challenge-protocol mean F1 {s['fixed_raw']['mean']:.3f} (threshold 0.5; "
        f"smoothed {s['fixed_smoothed']['mean']:.3f}, tuned {s['tuned_raw']['mean']:.3f}, "
        f"tuned + smoothed {s['tuned_smoothed']['mean']:.3f})")
  print(f"split {report['split']}, checkpoint step {report.get('checkpoint_step')}: "
        f"{protocol['num_frames']} labelled frames ({protocol['faceless_frames']} without a "
        f"face crop), {report['num_videos']} videos; {protocol['aus']}")
  print(f"protocol {protocol['description']}")
  print(f"thresholds tuned on {report['tuned_on']}")
  print("scoring".ljust(16) + "".join(n.rjust(6) for n in names) + "  mean")
  for scoring, row in s.items():
    print(scoring.ljust(16) + "".join(f"{row['per_au'][n]:6.3f}" for n in names) +
          f"  {row['mean']:.3f}")
  for name, row in report.get("optimistic", {}).items():
    print(name.ljust(16) + "".join(f"{row['per_au'][n]:6.3f}" for n in names) +
          f"  {row['mean']:.3f}  <- {row['description']}")
  shipped = report.get("shipped")
  if shipped:
    print(f"shipped: window {shipped['window']}, thresholds tuned on {shipped['tuned_on']} "
          f"(checkpoint step {shipped['checkpoint_step']}): mean F1 "
          f"{shipped['scored']['mean_f1']:.3f} on {shipped['scored']['split']} (row "
          f"{shipped['scored']['row']})")
  for name, sec in report["secondary"].items():
    if name == "strided" and sec.get("frame_stride") == 1:
      continue  # the same frames as the row above
    print(f"secondary, {sec['description']} ({sec['num_frames']} frames): mean F1 "
          f"{sec['fixed_raw']['mean']:.3f} at 0.5, {sec['fixed_smoothed']['mean']:.3f} "
          "smoothed")


FLAGS = flags.FLAGS


def define_flags():
  """The CLI's flags (defined only when run as a program, so the module imports cleanly)."""
  flags.DEFINE_string("workdir", None, "The training run's workdir.", required=True)
  flags.DEFINE_string("checkpoint", "best", "'best' (by validation mean F1), 'latest' or a "
                      "step number.")
  flags.DEFINE_string("split", None, "Split to report (default: the config's eval_split).")
  flags.DEFINE_string("tune_split", "", "Split to tune thresholds and window on; '' = "
                      "cross-video (each half of the videos tuned on the other).")
  flags.DEFINE_string("out_dir", None, "Where to write the report (default "
                      "<workdir>/eval_<split>).")
  flags.DEFINE_enum("protocol", "challenge", list(PROTOCOLS), "'paper' also scores the "
                    "split the authors' way (tuned on the frames it scores), labelled "
                    "optimistic.")
  cli.define_distributed_flags()


def main():
  cli.main(define_flags, lambda: evaluate(
      FLAGS.workdir, checkpoint=FLAGS.checkpoint, split=FLAGS.split,
      tune_split=FLAGS.tune_split, out_dir=FLAGS.out_dir,
      protocol=FLAGS.protocol),
           log_dir=lambda: FLAGS.out_dir or FLAGS.workdir, distributed=True)


if __name__ == "__main__":
  main()
