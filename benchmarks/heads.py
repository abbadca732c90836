"""The paper's comparison: the MLT head against a pooled head on the same backbone, over seeds.

  python -m benchmarks.heads --config=configs/demo_digits.py --workdir=workdir/heads/digits \
      [--cap_minutes=15] [--seeds=3] [--only=small_cnn_mlt,small_cnn_pooled] [--markdown_out=F]

Each model (MODELS) is the config's data, augmentation, loss and optimiser with one head or
the other, on one backbone:
  small_cnn_mlt / small_cnn_pooled  the config's small CNN and its recipe (the demo's, that of
                                    configs/from_scratch.py), MLT head or pooled head;
  plain_cnn_pooled / plain_cnn_mlt  the plain CNN at the textbook widths (32, 64, 128, 128) and
                                    the config's input size, with the textbook recipe
                                    (configuration.plain_cnn_reference), pooled or MLT head;
  plain_cnn_mlt_config_recipe       that backbone and the MLT head with the config's recipe
                                    (augmentation, loss, optimiser): what the recipe is worth.
The pooled head is the paper's baseline: global average pool, dropout, one dense layer.

Every run trains to its best validation score: up to --max_epochs epochs, evaluated every
--eval_every_epochs, stopped when --patience evaluations in a row bring no better one, and
stopped in any case at --cap_minutes of wall clock (SIGTERM: the run checkpoints and exits, as
a preempted job does; the cap counts start-up and evaluations). The checkpoint with the best
validation mean F1 is then scored on the test split, which nothing selected on: the
challenge protocol (every labelled frame), threshold 0.5, no smoothing (mlt_flax.evaluate).
Training and scoring are mlt_flax's own (train.train_and_evaluate in a child process,
evaluate.evaluate).

Resumable: each finished run appends one JSON line to <workdir>/runs.jsonl and is never
retrained; an unfinished one (no line) is started again from scratch, so that its cap counts
from its start. benchmarks/keras_reference.py appends lines of the same form to the same file,
and the table includes them. The table gives per model the mean ± std over seeds of the test
and the best validation mean F1, and per comparison (COMPARISONS) the difference of the test
means, called a difference only when it exceeds twice the larger std of the two ("within
noise" otherwise; one seed: no std, no verdict). docs/recipe.md, "Learning on data it was not
tuned for", holds what this printed.
"""

import contextlib
import json
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import time

from absl import flags

from benchmarks import cli

TEXTBOOK_WIDTHS = (32, 64, 128, 128)  # the plain CNN's textbook widths (models/plain_cnn.py)
# name: what it is
MODELS = {
    "small_cnn_mlt": "small CNN, MLT head (the config's recipe)",
    "small_cnn_pooled": "small CNN, pooled head (the config's recipe)",
    "plain_cnn_pooled": "plain CNN 32-64-128-128, pooled head (textbook recipe)",
    "plain_cnn_mlt": "plain CNN 32-64-128-128, MLT head (textbook recipe)",
    "plain_cnn_mlt_config_recipe": "plain CNN 32-64-128-128, MLT head (the config's recipe)",
}
KERAS = "keras_textbook_cnn"  # benchmarks/keras_reference.py's lines
DESCRIPTIONS = {**MODELS, KERAS: "the textbook CNN in tf.keras, Keras fit (its own loading)"}
# (a, b): the table says whether a beats b
COMPARISONS = (("small_cnn_mlt", "small_cnn_pooled"), ("plain_cnn_mlt", "plain_cnn_pooled"),
               ("plain_cnn_pooled", KERAS), ("small_cnn_mlt", KERAS),
               ("small_cnn_mlt", "plain_cnn_pooled"),
               ("plain_cnn_mlt_config_recipe", "plain_cnn_mlt"))
RUNS_FILE = "runs.jsonl"
TERM_GRACE_S = 120  # after SIGTERM, how long a run may take to write its checkpoint
PROTOCOL = "test split, challenge protocol (every labelled frame), threshold 0.5, no smoothing"


def _define_flags() -> None:
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file("config", None, "The benchmark's config (its data and the "
                                  "small CNN's recipe): configs/demo.py or demo_digits.py.",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Where each run lives (<workdir>/<model>_seed<k>).")
  flags.DEFINE_float("cap_minutes", 15.0, "Wall-clock cap of every run, minutes.")
  flags.DEFINE_integer("seeds", 3, "Seeds per model (0, 1, ...).")
  flags.DEFINE_integer("max_epochs", 100, "Epochs a run may train if neither early stopping "
                       "nor the cap ends it first.")
  flags.DEFINE_float("eval_every_epochs", 1.0, "Validation cadence, in epochs.")
  flags.DEFINE_integer("patience", 4, "Evaluations without a better validation F1 before a "
                       "run stops.")
  flags.DEFINE_list("only", [], f"Models to run, of {', '.join(MODELS)}; empty: all.")
  flags.DEFINE_string("markdown_out", "", "Also write the table here.")
  flags.DEFINE_string("child", "", "Internal: train one run, '<model>:<seed>:<steps/epoch>', "
                      "in --workdir.")
  flags.mark_flags_as_required(["config", "workdir"])


def model_config(config, name: str, seed: int, train_frames: int, *, max_epochs: int = 100,
                 eval_every_epochs: float = 1.0, patience: int = 4):
  """The config of model `name`, seed `seed`: `config`'s data, the model's backbone, head and
  recipe, trained by epochs of its own batch size over `train_frames` frames, with early
  stopping on validation."""
  from mlt_flax import configuration  # pylint: disable=g-import-not-at-top
  from mlt_flax import input_pipeline  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  if name not in MODELS:
    raise KeyError(f"unknown model {name!r}; expected one of {list(MODELS)}")
  if name.endswith("config_recipe"):
    out = ml_collections.ConfigDict(config.to_dict())
    out.model.backbone, out.model.head = "plain_cnn", "mlt"
    out.model.plain_cnn_widths = TEXTBOOK_WIDTHS
  elif name.startswith("plain_cnn"):
    out = configuration.plain_cnn_reference(config)
    out.model.plain_cnn_widths = TEXTBOOK_WIDTHS
    out.model.image_size = config.model.image_size  # the MLT's input size
    out.model.head = name.rsplit("_", 1)[1]
  else:
    out = ml_collections.ConfigDict(config.to_dict())
    out.model.head = name.rsplit("_", 1)[1]
  out.seed = seed
  t = out.train
  t.num_steps, t.num_epochs = 0, max_epochs
  per_epoch = input_pipeline.steps_per_epoch(train_frames, t.batch_size)
  t.eval_every_steps = max(int(round(eval_every_epochs * per_epoch)), 1)
  t.checkpoint_every_steps = t.eval_every_steps
  t.early_stopping_patience = patience  # also saves a checkpoint, with its score, per evaluation
  t.eval_at_start = False
  out.eval.train_f1_stride = 0  # the training-frame F1 is for learning curves, not selection
  return out


def train_frames(config) -> int:
  """The training frames of `config`'s datasets (what an epoch passes over)."""
  from mlt_flax import input_pipeline  # pylint: disable=g-import-not-at-top
  return sum(s.num_frames for s in input_pipeline.train_split_stats(config))


def run_capped(command: list[str], cap_s: float, log_path, env=None) -> str:
  """Runs `command` (stdout and stderr to log_path) for at most cap_s seconds; then SIGTERM
  (TERM_GRACE_S to exit), then SIGKILL. Returns 'finished', 'cap' or 'killed'."""
  with open(log_path, "ab") as log:
    child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
      child.wait(timeout=cap_s)
      if child.returncode:
        raise RuntimeError(f"{' '.join(command[:4])} ... exited {child.returncode}; see "
                           f"{log_path}")
      return "finished"
    except subprocess.TimeoutExpired:
      child.send_signal(signal.SIGTERM)
      try:
        child.wait(timeout=TERM_GRACE_S)
        return "cap"
      except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        return "killed"


def read_runs(workdir) -> list[dict]:
  """The finished runs' lines of <workdir>/runs.jsonl (heads.py's and keras_reference.py's)."""
  path = pathlib.Path(workdir) / RUNS_FILE
  if not path.exists():
    return []
  runs = []
  for i, line in enumerate(path.read_text().splitlines(), start=1):
    if line.strip():
      try:
        runs.append(json.loads(line))
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{i}: not a JSON line ({e.msg})") from None
  return runs


def append_run(workdir, run: dict) -> None:
  with open(pathlib.Path(workdir) / RUNS_FILE, "a") as f:
    f.write(json.dumps(run, default=float) + "\n")


def _mean_std(values: list[float]) -> tuple[float, float | None]:
  return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def summarise(runs: list[dict]) -> dict[str, dict]:
  """model -> n, test and validation mean and std (None for one seed), seconds, stops."""
  out = {}
  for name in dict.fromkeys(r["model"] for r in runs):
    rs = [r for r in runs if r["model"] == name]
    test, test_std = _mean_std([r["test_f1"] for r in rs])
    val, val_std = _mean_std([r["val_f1"] for r in rs])
    out[name] = {"n": len(rs), "seeds": sorted(r["seed"] for r in rs), "test": test,
                 "test_std": test_std, "val": val, "val_std": val_std,
                 "seconds": statistics.fmean(r["seconds"] for r in rs),
                 "epochs": statistics.fmean(r["epochs"] for r in rs),
                 "stops": sorted({r["stopped"] for r in rs}),
                 "caps": sorted({r["cap_minutes"] for r in rs})}
  return out


def verdict(a: dict, b: dict) -> tuple[float, str]:
  """(mean test F1 of a − that of b, what it says): a difference counts only beyond twice the
  larger of the two std over seeds."""
  delta = a["test"] - b["test"]
  if a["test_std"] is None or b["test_std"] is None:
    return delta, "one seed: no verdict"
  noise = 2 * max(a["test_std"], b["test_std"])
  if abs(delta) <= noise:
    return delta, f"within noise (2 std = {noise:.3f})"
  return delta, f"{'first' if delta > 0 else 'second'} better (beyond 2 std = {noise:.3f})"


def markdown(summary: dict[str, dict]) -> str:
  pm = lambda m, s: f"{m:.3f}" + ("" if s is None else f" ± {s:.3f}")
  lines = [f"Mean F1 on the {PROTOCOL}; mean ± std over seeds.", "",
           "| model | what | seeds | test F1 | best val F1 | epochs | s | cap (min) | "
           "stopped by |", "|---|---|---|---|---|---|---|---|---|"]
  for name, s in summary.items():
    lines.append(f"| {name} | {DESCRIPTIONS.get(name, '')} | {s['n']} | "
                 f"{pm(s['test'], s['test_std'])} | {pm(s['val'], s['val_std'])} | "
                 f"{s['epochs']:.1f} | {s['seconds']:.0f} | "
                 f"{', '.join(f'{c:g}' for c in s['caps'])} | {', '.join(s['stops'])} |")
  pairs = [(a, b) for a, b in COMPARISONS if a in summary and b in summary]
  if pairs:
    lines += ["", "| comparison | Δ test F1 | verdict |", "|---|---|---|"]
    for a, b in pairs:
      delta, says = verdict(summary[a], summary[b])
      lines.append(f"| {a} vs {b} | {delta:+.3f} | {says} |")
  return "\n".join(lines)


def _child(config, workdir: pathlib.Path, spec: str) -> None:
  """Trains one run in workdir (its SIGTERM handler checkpoints and exits 0 at the cap)."""
  from mlt_flax import train  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  name, seed, frames = spec.split(":")
  train.train_and_evaluate(model_config(
      config, name, int(seed), int(frames), max_epochs=f.max_epochs,
      eval_every_epochs=f.eval_every_epochs, patience=f.patience), workdir)


def run_one(config, workdir: pathlib.Path, name: str, seed: int, frames: int) -> dict:
  """Trains model `name` with `seed` under the cap in a child process, scores its best
  checkpoint on the test split; returns its runs.jsonl line."""
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  from mlt_flax import evaluate  # pylint: disable=g-import-not-at-top
  from mlt_flax import input_pipeline  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  per_epoch = input_pipeline.steps_per_epoch(  # at the model's own batch size
      frames, model_config(config, name, seed, frames).train.batch_size)
  run_dir = workdir / f"{name}_seed{seed}"
  shutil.rmtree(run_dir, ignore_errors=True)  # an unfinished run starts again, cap and all
  run_dir.mkdir(parents=True)
  command = [sys.executable, "-m", "benchmarks.heads",
             f"--config={config_flags.get_config_filename(f['config'])}", f"--workdir={run_dir}", f"--child={name}:{seed}:{frames}",
             f"--max_epochs={f.max_epochs}", f"--eval_every_epochs={f.eval_every_epochs}",
             f"--patience={f.patience}"]
  command += [a for a in sys.argv[1:] if a.startswith("--config.")]  # the config's overrides
  t = time.perf_counter()
  ended = run_capped(command, f.cap_minutes * 60, run_dir / "train.log")
  seconds = time.perf_counter() - t
  summary_path = run_dir / "summary.json"
  curves_path = run_dir / "curves.json"
  curves = json.loads(curves_path.read_text())["evaluations"] if curves_path.exists() else []
  if not curves:
    raise RuntimeError(f"{run_dir}: no validation evaluation within the cap; raise "
                       "--cap_minutes or evaluate more often")
  stopped = ended
  if ended == "finished":
    stopped = "early stop" if json.loads(summary_path.read_text())["stopped_early"] else (
        "max epochs")
  with open(run_dir / "eval.log", "w") as log, contextlib.redirect_stdout(log):
    report = evaluate.evaluate(run_dir, checkpoint="best", split="test")
  # The checkpoint manager's best (ties: the later step) must be a best evaluation.
  best = next((p for p in curves if p["step"] == report["checkpoint_step"]), None)
  top = max(p["val_mean_f1"] for p in curves)
  if best is None or best["val_mean_f1"] != top:
    raise RuntimeError(f"{run_dir}: the best checkpoint is step {report['checkpoint_step']}, "
                       f"not one of the best validation evaluations ({top:.4f})")
  return {"model": name, "seed": seed, "test_f1": report["scores"]["fixed_raw"]["mean"],
          "val_f1": best["val_mean_f1"], "best_step": best["step"],
          "steps": curves[-1]["step"], "epochs": curves[-1]["step"] / per_epoch,
          "seconds": round(seconds, 1), "stopped": stopped, "cap_minutes": f.cap_minutes,
          "protocol": PROTOCOL}


def require_test_split(config) -> None:
  """A clear error when the benchmark's build has no test split (built before it existed)."""
  from mlt_flax import input_pipeline  # pylint: disable=g-import-not-at-top
  b = input_pipeline.builder(config.data.eval_dataset, config.data.data_dir)
  if "test" not in b.info.splits:
    raise FileNotFoundError(
        f"{b.data_dir} has no 'test' split (built from a manual dir without "
        f"AU_Detection_Challenge/Test_Set); set config.demo.num_test_videos, delete that "
        f"folder and run again to rebuild it")


def main() -> None:
  f = flags.FLAGS
  from mlt_flax import xla_cpu  # pylint: disable=g-import-not-at-top
  xla_cpu.apply_defaults()  # the entry points' XLA:CPU flags, before JAX starts
  from mlt_flax import console  # pylint: disable=g-import-not-at-top
  console.quiet_native_logs()
  workdir = pathlib.Path(f.workdir)
  if f.child:
    _child(f.config, workdir, f.child)
    return
  from mlt_flax import demo  # pylint: disable=g-import-not-at-top
  names = f.only or list(MODELS)
  unknown = sorted(set(names) - set(MODELS))
  if unknown:
    console.exit_with_error(f"--only: unknown models {unknown}; expected any of {list(MODELS)}")
  workdir.mkdir(parents=True, exist_ok=True)
  console.setup(workdir)
  demo.prepare_data(f.config)
  require_test_split(f.config)
  frames = train_frames(f.config)
  done = {(r["model"], r["seed"]) for r in read_runs(workdir)}
  todo = [(n, s) for n in names for s in range(f.seeds) if (n, s) not in done]
  console.stage(f"{len(todo)} run{'s' * (len(todo) != 1)} to do ({len(done)} done), each "
                f"capped at {f.cap_minutes:g} min -> {workdir}")
  for name, seed in todo:
    run = run_one(f.config, workdir, name, seed, frames)
    append_run(workdir, run)
    print(f"{name} seed {seed}: test mean F1 {run['test_f1']:.3f} (best validation "
          f"{run['val_f1']:.3f} at step {run['best_step']} of {run['steps']}; "
          f"{run['stopped']}, {run['seconds']:.0f}s)")
  table = markdown(summarise(read_runs(workdir)))
  console.stage("heads")
  print(table)
  if f.markdown_out:
    pathlib.Path(f.markdown_out).write_text(table + "\n")


if __name__ == "__main__":
  cli.run(_define_flags, main)
