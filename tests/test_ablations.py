"""benchmarks/ablations.py: each variant is its config with exactly its change, the reference
sees as many frames, the table says what each run scored, and a sweep runs end to end."""

import json
import pathlib
import subprocess
import sys

import pytest

from conftest import flat
from conftest import tiny_digit_sweep_flags

from benchmarks import ablations
from configs import demo
from mlt_flax import configuration

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(ablations.VARIANTS))
def test_a_variant_is_the_config_with_its_change_only(name):
  base = demo.get_config()
  config = ablations.variant_config(base, name, steps=60)
  configuration.validate(config)
  changed = {k for k, v in flat(config).items() if flat(base)[k] != v}
  schedule = {"train.num_steps", "train.eval_every_steps", "train.checkpoint_every_steps"}
  assert changed - schedule == set(ablations.VARIANTS[name][1])
  assert config.train.num_steps == 60
  assert config.train.eval_every_steps == 60  # the demo's 600 capped by the run's length


def test_the_reference_trains_on_as_many_frames_with_its_own_recipe():
  base = demo.get_config()
  base.train.batch_size = 64
  config = ablations.variant_config(base, ablations.REFERENCE, steps=100)
  assert config.model.backbone == "plain_cnn" and config.model.head == "pooled"
  assert config.train.num_steps * config.train.batch_size == 100 * 64


def test_a_variant_naming_a_field_the_config_lacks_is_refused(monkeypatch):
  monkeypatch.setitem(ablations.VARIANTS, "typo", ("a typo", {"optim.warmup_epoch": 1.0}))
  with pytest.raises(KeyError, match="variant typo: no config field optim.warmup_epoch"):
    ablations.variant_config(demo.get_config(), "typo", steps=10)


def test_the_table_row_is_the_best_and_the_last_evaluation():
  summary = {"evaluations": [
      {"step": 10, "val_mean_f1": 0.5, "train_mean_f1": 0.6},
      {"step": 20, "val_mean_f1": 0.7, "train_mean_f1": 0.8},
      {"step": 30, "val_mean_f1": 0.6, "train_mean_f1": 0.9},
      {"step": 40, "val_mean_f1": 0.9, "train_mean_f1": 1.0}], "steps": 40,
      "seconds_this_sweep": 12.0}
  assert ablations.row("no_dice", summary, 40)["best_val_f1"] == 0.9
  r = ablations.row("no_dice", summary, 30)  # a longer run counts for its first 30 steps
  assert (r["best_val_f1"], r["best_step"], r["last_val_f1"]) == (0.7, 20, 0.6)
  assert r["gap"] == pytest.approx(0.3)
  assert r["seconds"] is None  # its time is the longer run's
  r["seconds"] = 12.0
  base = dict(r, name="demo", last_val_f1=0.5)
  table = ablations.markdown([base, r], base)
  assert "| no_dice | BCE only, no Dice term | 0.700 (20) | 0.600 | +0.100 | 0.900 | 0.300 | 12 |" \
      in table


@pytest.mark.slow  # two trainings in a subprocess
def test_a_sweep_trains_each_run_prints_the_table_and_resumes(tmp_path):
  data = tmp_path / "data"
  args = [sys.executable, "-m", "benchmarks.ablations", f"--workdir={tmp_path / 'sweep'}",
          "--steps=2", "--only=demo,no_dice", f"--markdown_out={tmp_path / 'table.md'}",
          *tiny_digit_sweep_flags(data)]
  r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  result = json.loads((tmp_path / "sweep" / "ablations.json").read_text())
  assert [row["name"] for row in result["rows"]] == ["demo", "no_dice"]
  for row in result["rows"]:
    summary = json.loads((tmp_path / "sweep" / row["name"] / "summary.json").read_text())
    assert summary["steps"] == 2
    assert row["last_val_f1"] == summary["evaluations"][-1]["val_mean_f1"]
    assert f"no_dice: best validation mean F1 {result['rows'][1]['best_val_f1']:.3f}" in r.stdout
  table = (tmp_path / "table.md").read_text()
  assert table.strip() in r.stdout and "| no_dice | BCE only, no Dice term |" in table
  # A second sweep reads the finished runs back instead of training them again.
  summaries = sorted((tmp_path / "sweep").glob("*/summary.json"))
  written = [p.stat().st_mtime_ns for p in summaries]
  again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert again.returncode == 0, again.stderr[-3000:]
  assert (tmp_path / "table.md").read_text() == table
  assert [p.stat().st_mtime_ns for p in summaries] == written
