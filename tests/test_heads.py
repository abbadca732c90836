"""benchmarks/heads.py: the two models of a pair differ in their head only, every run trains
by epochs with early stopping under a wall-clock cap, the best validation checkpoint is scored
on the test split, and a difference is called only beyond twice the seeds' std."""

import json
import pathlib
import subprocess
import sys

import pytest

from conftest import flat
from conftest import tiny_digit_sweep_flags

from benchmarks import heads
from configs import demo
from mlt_flax import configuration

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("backbone", ["small_cnn", "plain_cnn"])
def test_the_two_models_of_a_backbone_differ_in_their_head_only(backbone):
  base = demo.get_config()
  mlt, pooled = (heads.model_config(base, f"{backbone}_{head}", seed=1, train_frames=1600)
                 for head in ("mlt", "pooled"))
  for config in (mlt, pooled):
    configuration.validate(config)
  assert (mlt.model.head, pooled.model.head) == ("mlt", "pooled")
  a, b = flat(mlt), flat(pooled)
  assert {k for k in a if a[k] != b[k]} == {"model.head"}


def test_the_plain_cnn_is_the_textbook_net_and_recipe_at_the_mlts_input_size():
  base = demo.get_config()
  config = heads.model_config(base, "plain_cnn_pooled", seed=0, train_frames=1600)
  assert config.model.backbone == "plain_cnn"
  assert tuple(config.model.plain_cnn_widths) == (32, 64, 128, 128)
  assert config.model.image_size == base.model.image_size == 112
  assert config.optim.backbone_lr == 1e-3 and not config.loss.dice and config.loss.bce
  assert config.augment.translate == 0.1 and not config.augment.hflip


def test_the_config_recipe_on_the_plain_cnn_changes_the_backbone_only():
  base = demo.get_config()
  config = heads.model_config(base, "plain_cnn_mlt_config_recipe", seed=0, train_frames=1600)
  small = heads.model_config(base, "small_cnn_mlt", seed=0, train_frames=1600)
  a, b = flat(config), flat(small)
  assert {k for k in a if a[k] != b[k]} == {"model.backbone"}  # the widths: the default's
  assert tuple(config.model.plain_cnn_widths) == (32, 64, 128, 128)
  configuration.validate(config)


def test_the_small_cnn_keeps_the_configs_recipe():
  base = demo.get_config()
  config = heads.model_config(base, "small_cnn_mlt", seed=2, train_frames=1600)
  changed = {k for k, v in flat(config).items() if flat(base)[k] != v}
  assert changed <= {"seed", "train.num_steps", "train.num_epochs", "train.eval_every_steps",
                     "train.checkpoint_every_steps", "train.early_stopping_patience",
                     "train.eval_at_start", "eval.train_f1_stride"}
  assert config.seed == 2


def test_every_run_trains_by_epochs_and_stops_early_on_validation():
  config = heads.model_config(demo.get_config(), "small_cnn_pooled", seed=0, train_frames=3104,
                              max_epochs=30, eval_every_epochs=0.5, patience=3)
  t = config.train
  assert (t.num_steps, t.num_epochs, t.early_stopping_patience) == (0, 30, 3)
  assert t.eval_every_steps == t.checkpoint_every_steps == 48  # every half epoch


def test_an_epoch_is_counted_at_each_models_own_batch_size():
  # The plain CNN trains at its textbook batch (configuration.REFERENCE_BATCH), the small CNN
  # at the config's: 800 frames are 100 steps of 8 and 25 of 32.
  base = demo.get_config()
  base.train.batch_size = 8
  small = heads.model_config(base, "small_cnn_mlt", seed=0, train_frames=800)
  plain = heads.model_config(base, "plain_cnn_mlt", seed=0, train_frames=800)
  assert (small.train.batch_size, small.train.eval_every_steps) == (8, 100)
  assert (plain.train.batch_size, plain.train.eval_every_steps) == (32, 25)


def test_an_unknown_model_is_refused():
  with pytest.raises(KeyError, match="unknown model 'small_cnn_attention'"):
    heads.model_config(demo.get_config(), "small_cnn_attention", seed=0, train_frames=32)


def test_the_cap_sends_sigterm_and_the_run_ends_as_preempted(tmp_path):
  # A child that, like train.train_and_evaluate, checkpoints on SIGTERM and exits 0.
  child = ("import signal, sys, time\n"
           "signal.signal(signal.SIGTERM, lambda *_: (print('saved', flush=True), sys.exit(0)))\n"
           "print('started', flush=True)\n"
           "time.sleep(60)\n")
  log = tmp_path / "log.txt"
  assert heads.run_capped([sys.executable, "-c", child], 3.0, log) == "cap"
  assert log.read_text().split() == ["started", "saved"]
  assert heads.run_capped([sys.executable, "-c", "print('done')"], 30.0, log) == "finished"
  with pytest.raises(RuntimeError, match="exited 3"):
    heads.run_capped([sys.executable, "-c", "raise SystemExit(3)"], 30.0, log)


def _run(model, seed, test_f1, val_f1=0.5):
  return {"model": model, "seed": seed, "test_f1": test_f1, "val_f1": val_f1, "seconds": 10.0,
          "epochs": 5.0, "stopped": "early stop", "cap_minutes": 15.0}


def test_a_difference_counts_only_beyond_twice_the_seeds_std():
  runs = ([_run("small_cnn_mlt", s, f) for s, f in enumerate((0.80, 0.82, 0.84))] +
          [_run("small_cnn_pooled", s, f) for s, f in enumerate((0.70, 0.71, 0.72))] +
          [_run("plain_cnn_mlt", s, f) for s, f in enumerate((0.70, 0.75, 0.80))] +
          [_run("plain_cnn_pooled", s, f) for s, f in enumerate((0.72, 0.74, 0.76))])
  s = heads.summarise(runs)
  assert s["small_cnn_mlt"]["test"] == pytest.approx(0.82)
  assert s["small_cnn_mlt"]["test_std"] == pytest.approx(0.02)  # sample std, n - 1
  delta, says = heads.verdict(s["small_cnn_mlt"], s["small_cnn_pooled"])
  assert delta == pytest.approx(0.11) and says.startswith("first better")  # 0.11 > 2 x 0.02
  delta, says = heads.verdict(s["plain_cnn_mlt"], s["plain_cnn_pooled"])
  assert delta == pytest.approx(0.01) and says.startswith("within noise")  # 0.01 < 2 x 0.05
  table = heads.markdown(s)
  assert ("| small_cnn_mlt | small CNN, MLT head (the config's recipe) | 3 | 0.820 ± 0.020 | "
          "0.500 ± 0.000 | 5.0 | 10 | 15 | early stop |") in table
  assert "| small_cnn_mlt vs small_cnn_pooled | +0.110 | first better" in table
  assert "| plain_cnn_mlt vs plain_cnn_pooled | +0.010 | within noise" in table


def test_one_seed_gives_no_verdict_and_a_broken_line_is_named(tmp_path):
  s = heads.summarise([_run("small_cnn_mlt", 0, 0.8), _run("small_cnn_pooled", 0, 0.6)])
  assert s["small_cnn_mlt"]["test_std"] is None
  assert heads.verdict(s["small_cnn_mlt"], s["small_cnn_pooled"])[1] == "one seed: no verdict"
  heads.append_run(tmp_path, _run("small_cnn_mlt", 0, 0.8))
  with open(tmp_path / heads.RUNS_FILE, "a") as f:
    f.write("{not json\n")
  with pytest.raises(ValueError, match=r"runs.jsonl:2: not a JSON line"):
    heads.read_runs(tmp_path)


@pytest.mark.slow  # two trainings in child processes
def test_a_sweep_scores_the_best_checkpoint_on_test_writes_a_line_per_run_and_resumes(tmp_path):
  data = tmp_path / "data"
  args = [sys.executable, "-m", "benchmarks.heads", f"--workdir={tmp_path / 'sweep'}",
          "--seeds=1", "--max_epochs=2", "--patience=1", "--cap_minutes=8",
          "--only=small_cnn_mlt,small_cnn_pooled", f"--markdown_out={tmp_path / 'table.md'}",
          *tiny_digit_sweep_flags(data, num_test_videos=2)]
  r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  runs = heads.read_runs(tmp_path / "sweep")
  assert [(x["model"], x["seed"]) for x in runs] == [("small_cnn_mlt", 0),
                                                     ("small_cnn_pooled", 0)]
  for run in runs:
    run_dir = tmp_path / "sweep" / f"{run['model']}_seed0"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["head"] == run["model"].rsplit("_", 1)[1]
    curves = json.loads((run_dir / "curves.json").read_text())["evaluations"]
    assert run["val_f1"] == max(p["val_mean_f1"] for p in curves)  # a best evaluation's step
    assert run["val_f1"] == next(p for p in curves if p["step"] == run["best_step"])[
        "val_mean_f1"]
    report = json.loads((run_dir / "eval_test" / "report.json").read_text())
    assert report["split"] == "test" and report["checkpoint_step"] == run["best_step"]
    assert run["test_f1"] == pytest.approx(report["scores"]["fixed_raw"]["mean"])
    assert run["stopped"] in ("early stop", "max epochs")
  table = (tmp_path / "table.md").read_text()
  assert table.strip() in r.stdout and "| small_cnn_mlt vs small_cnn_pooled |" in table
  # A second sweep trains nothing: every run has its line.
  again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "0 runs to do (2 done)" in again.stdout
  assert len(heads.read_runs(tmp_path / "sweep")) == 2
