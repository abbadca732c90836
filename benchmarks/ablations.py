"""What each difference between the MLT recipe and the plain-CNN reference is worth.

  python -m benchmarks.ablations --config=configs/demo_digits.py \
      --workdir=workdir/ablations/digits [--steps=600] [--only=demo,no_dice] [--markdown_out=F]

Trains the config as it is, then once per variant below with that one change (same data,
seed, steps and evaluation cadence), and the plain-CNN reference (configuration.
plain_cnn_reference) for as many frames; prints one line per run as it ends and then the
table: best and last validation mean F1 at threshold 0.5, training-frame F1 at the last
evaluation (config.eval.train_f1_stride) and the gap between the two, seconds. Each run lives
in <workdir>/<name>; a finished one is read back, not retrained, so an interrupted sweep
resumes (a run of more steps counts for its first --steps). The config's dataset
(config.demo) is generated and built first if absent.

The schedules do not depend on the run's length (the transformer's inverse square root and
the backbone's per-epoch decay), so a run of --steps steps is the start of a longer one.
docs/recipe.md, "Learning on data it was not tuned for", holds the tables this printed.
"""

import json
import pathlib
import time

from absl import flags

from benchmarks import cli

# name: (what it changes, the config overrides: dotted field -> value)
VARIANTS = {
    "demo": ("the config as it is", {}),
    "wider_backbone": ("small CNN (32, 64, 128) -> 256 features (the library default)",
                       {"model.small_cnn_widths": (32, 64, 128),
                        "model.small_cnn_features": 256}),
    "recipe_transformer_lr": ("transformer lr of the paper (batch tokens 25,000)",
                              {"optim.transformer_batch_tokens": 25000.0}),
    "higher_transformer_lr": ("transformer lr x2.5 (batch tokens 4,000)",
                              {"optim.transformer_batch_tokens": 4000.0}),
    "recipe_warmup": ("warm-up of the paper (2.5 epochs)", {"optim.warmup_epochs": 2.5}),
    "no_label_smoothing": ("label smoothing 0", {"augment.label_smoothing": 0.0}),
    "no_dice": ("BCE only, no Dice term", {"loss.dice": False}),
    "no_frequency_weights": ("no per-AU frequency weights", {"loss.frequency_weights": False}),
    "no_flip": ("no horizontal flip", {"augment.hflip": False}),
    "no_rotation_zoom": ("no rotation, no zoom",
                         {"augment.rotation_max_turns": 0.0, "augment.zoom": 0.0}),
    "translate": ("random translations +-10% (the reference's augmentation)",
                  {"augment.translate": 0.1}),
    "no_position_embedding": ("no position embedding on the patch tokens",
                              {"model.use_position_embedding": False}),
    "no_weight_decay": ("no weight decay", {"optim.weight_decay": 0.0}),
}
REFERENCE = "plain_cnn_reference"


def _define_flags() -> None:
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file("config", None, "The config the variants change.",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Where each run lives (<workdir>/<name>).")
  flags.DEFINE_integer("steps", 600, "Training steps of every run.")
  flags.DEFINE_list("only", [], f"Runs to do, of {', '.join((*VARIANTS, REFERENCE))}; "
                    "empty: all.")
  flags.DEFINE_string("markdown_out", "", "Also write the table here.")
  flags.mark_flags_as_required(["config", "workdir"])


def variant_config(config, name: str, steps: int):
  """`config` with variant `name`'s overrides (or the reference's recipe), trained `steps`."""
  from mlt_flax import configuration  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  if name == REFERENCE:
    out = configuration.plain_cnn_reference(config, 0)
    out.train.num_steps = max(round(steps * config.train.batch_size / out.train.batch_size), 1)
  else:
    out = ml_collections.ConfigDict(config.to_dict())
    out.train.num_steps = steps
    for field, value in VARIANTS[name][1].items():
      *parents, leaf = field.split(".")
      node = out
      for p in parents:
        node = node[p]
      if leaf not in node:
        raise KeyError(f"variant {name}: no config field {field}")
      node[leaf] = value
  t = out.train
  t.eval_every_steps = min(t.eval_every_steps, t.num_steps)
  t.checkpoint_every_steps = t.num_steps
  t.early_stopping_patience = 0
  return out


def row(name: str, summary: dict, steps: int) -> dict:
  """The table's figures of one run, from its train summary, up to step `steps` (a longer
  run of the same config counts for its first `steps`: the schedules do not depend on the
  run's length)."""
  points = [p for p in summary["evaluations"] if p["step"] <= steps]
  best = max(points, key=lambda p: p["val_mean_f1"])
  last = points[-1]
  train_f1 = last.get("train_mean_f1")
  return {"name": name, "what": VARIANTS[name][0] if name in VARIANTS else
          "four conv blocks, pooled dense head, Adam 1e-3, BCE, translations",
          "best_val_f1": best["val_mean_f1"], "best_step": best["step"],
          "last_val_f1": last["val_mean_f1"], "last_step": last["step"],
          "train_f1": train_f1,
          "gap": None if train_f1 is None else train_f1 - last["val_mean_f1"],
          "seconds": summary.get("seconds_this_sweep") if summary["steps"] == steps else None}


def markdown(rows: list[dict], baseline: dict | None) -> str:
  fmt = lambda v: "–" if v is None else f"{v:.3f}"
  lines = ["| run | what changes | best val F1 (step) | last val F1 | vs demo | train F1 | "
           "train − val | s |", "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    delta = None if baseline is None else r["last_val_f1"] - baseline["last_val_f1"]
    lines.append(
        f"| {r['name']} | {r['what']} | {fmt(r['best_val_f1'])} ({r['best_step']}) | "
        f"{fmt(r['last_val_f1'])} | {'–' if delta is None else f'{delta:+.3f}'} | "
        f"{fmt(r['train_f1'])} | {fmt(r['gap'])} | "
        f"{'–' if r['seconds'] is None else round(r['seconds'])} |")
  return "\n".join(lines)


def main() -> None:
  f = flags.FLAGS
  from mlt_flax import xla_cpu  # pylint: disable=g-import-not-at-top
  xla_cpu.apply_defaults()  # the entry points' XLA:CPU flags, before JAX starts
  from mlt_flax import console  # pylint: disable=g-import-not-at-top
  console.quiet_native_logs()
  from mlt_flax import demo  # pylint: disable=g-import-not-at-top
  names = f.only or [*VARIANTS, REFERENCE]
  unknown = sorted(set(names) - {*VARIANTS, REFERENCE})
  if unknown:
    console.exit_with_error(f"--only: unknown runs {unknown}; expected any of "
                            f"{[*VARIANTS, REFERENCE]}")
  workdir = pathlib.Path(f.workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  console.setup(workdir)
  demo.prepare_data(f.config)
  console.stage(f"{len(names)} run{'s' * (len(names) > 1)} of {f.steps} steps -> {workdir}")
  rows = []
  for name in names:
    run_dir = workdir / name
    done = run_dir / "ablation.json"
    summary = json.loads(done.read_text()) if done.exists() else None
    if summary is None or summary["steps"] < f.steps:
      t = time.perf_counter()
      summary = demo.train_quietly(variant_config(f.config, name, f.steps), run_dir, name)
      summary["seconds_this_sweep"] = time.perf_counter() - t
      done.write_text(json.dumps(summary, indent=1, default=float))
    rows.append(row(name, summary, f.steps))
    r = rows[-1]
    print(f"{name}: best validation mean F1 {r['best_val_f1']:.3f} at step {r['best_step']}, "
          f"last {r['last_val_f1']:.3f}" + ("" if r["train_f1"] is None else
                                           f", training frames {r['train_f1']:.3f}"))
  baseline = next((r for r in rows if r["name"] == "demo"), None)
  table = markdown(rows, baseline)
  console.stage("ablations")
  print(table)
  cli.write_json(workdir / "ablations.json", {"steps": f.steps, "rows": rows})
  if f.markdown_out:
    pathlib.Path(f.markdown_out).write_text(table + "\n")


if __name__ == "__main__":
  cli.run(_define_flags, main)
