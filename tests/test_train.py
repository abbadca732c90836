"""The data-parallel train step and the train_and_evaluate loop, on 8 fake CPU devices."""

import json
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from conftest import loop_config
from mlt_flax import aus
from mlt_flax import checkpoints
from mlt_flax import curves
from mlt_flax import models
from mlt_flax import runtime
from mlt_flax import train

NUM_LABELS = 12
ROOT = pathlib.Path(__file__).resolve().parents[1]


def quiet(config):
  """No randomness in the step: augmentation and dropout off (for exact comparisons)."""
  a = config.augment
  a.mixup, a.hflip, a.brightness_delta, a.channel_drop_prob = False, False, 0.0, 0.0
  a.rotation_max_turns, a.zoom, a.label_smoothing = 0.0, 0.0, 0.0
  config.model.dropout_rate = 0.0
  return config


def setup(config, devices):
  dp = runtime.DataParallel(devices)
  model, lr_fns, tx = runtime.build(config, steps_per_epoch=10)
  state = jax.jit(lambda: runtime.create_train_state(0, model, tx, config.model.image_size),
                  out_shardings=dp.replicated)()
  step = train.make_train_step(config, dp, model=model, tx=tx, lr_fns=lr_fns,
                               weights=np.ones(NUM_LABELS), allow_mixup=False)
  return dp, state, step


def random_batch(seed, n=16, size=112):
  rng = np.random.default_rng(seed)
  return {"image": rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
          "labels": rng.choice([-1.0, 0.0, 1.0], size=(n, NUM_LABELS)).astype(np.float32)}


@pytest.mark.slow  # compiles the train step for 1 and for 8 devices (~22 s)
def test_one_device_and_eight_devices_give_the_same_update():
  # Gradients and BatchNorm statistics are averaged over devices: the global batch decides.
  config = quiet(tiny.get_config())
  assert jax.device_count() == 8
  results = []
  for devices in (jax.devices()[:1], jax.devices()):
    dp, state, step = setup(config, devices)
    for s in range(3):
      state, metrics, finite = step(state, dp.to_global(random_batch(s)))
      assert bool(finite)
    results.append(jax.device_get((state.params, state.batch_stats, metrics.compute())))
  for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_state_is_replicated_and_donated():
  config = quiet(tiny.get_config())
  dp, state, step = setup(config, jax.devices())
  old_leaf = jax.tree.leaves(state.params)[0]
  state, _, _ = step(state, dp.to_global(random_batch(0)))
  assert old_leaf.is_deleted()  # donated to the step
  leaf = jax.tree.leaves(state.params)[0]
  assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 8
  assert int(state.step) == 1


def test_a_nonfinite_step_changes_nothing_but_the_counter():
  config = quiet(tiny.get_config())
  dp, state, step = setup(config, jax.devices())
  before = jax.device_get(state.params)
  batch = random_batch(0)
  # A non-finite value injected into the batch (frames are uint8, labels the only floats;
  # NaN labels would read as "not annotated", so inject +inf).
  batch["labels"][3, 2] = np.inf
  state, _, finite = step(state, dp.to_global(batch))
  assert not bool(finite) and int(state.nonfinite_steps) == 1
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(jax.device_get(state.params))):
    np.testing.assert_array_equal(a, b)


def test_tiny_training_runs_end_to_end_and_the_loss_goes_down(trained):
  _, workdir, summary = trained
  losses = [h["train/loss"] for h in summary["history"]]
  assert summary["steps"] == 12 and len(losses) == 6
  assert np.mean(losses[-2:]) < np.mean(losses[:2])
  # The logged validation score: per-AU F1 of the final state and their mean (the report of
  # the same checkpoint gives the same numbers: tests/test_runtime.py).
  per_au = {k: v for k, v in summary["final_eval"].items() if k.startswith("val_f1/")}
  assert sorted(per_au) == sorted(f"val_f1/AU{a}" for a in aus.AFFWILD2)
  assert summary["final_eval"]["mean_f1"] == pytest.approx(np.mean(list(per_au.values())))
  # Each checkpoint records its evaluation's validation mean F1, and the best checkpoint is
  # the step with the highest one recorded (ties to the latest, as Orbax ranks them).
  recorded = {p["step"]: json.loads((workdir / "checkpoints" / str(p["step"]) / "metrics" /
                                     "metrics").read_text())[checkpoints.BEST_METRIC]
              for p in summary["evaluations"]}
  assert recorded == {p["step"]: p["val_mean_f1"] for p in summary["evaluations"]}
  assert summary["best_step"] == max(recorded, key=lambda step: (recorded[step], step))
  assert checkpoints.select_step(checkpoints.manager(workdir, trained[0]), "best") == (
      summary["best_step"])
  assert summary["nonfinite_steps"] == 0
  assert len(summary["param_digest"]) == 16
  assert (workdir / "summary.json").exists() and (workdir / "config.json").exists()
  assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir()
                if p.name.isdigit()) == [6, 12]
  assert list(workdir.glob("events.out.tfevents*"))  # TensorBoard, through clu's writer
  # The learning curves: one point per evaluation, kept in the workdir and drawn.
  assert [p["step"] for p in summary["evaluations"]] == [6, 12]
  assert json.loads((workdir / curves.FILE).read_text())["evaluations"] == summary["evaluations"]
  assert (workdir / curves.PLOT).stat().st_size > 0


@pytest.mark.slow  # two trainings in a row (~24 s)
def test_early_stopping_ends_a_run_whose_validation_f1_stopped_improving(
    synthetic_tfds, tmp_path, capsys):
  config = loop_config(synthetic_tfds, num_steps=12, eval_every_steps=2,
                       checkpoint_every_steps=12, early_stopping_patience=2)
  config.eval.threshold = 0.999  # nothing is ever predicted: F1 0.0 at every evaluation
  config.eval.train_f1_stride = 3
  summary = train.train_and_evaluate(config, str(tmp_path))
  # Best at step 2 (the first); steps 4 and 6 do not beat it: stop at 6. With early stopping
  # every evaluation is checkpointed, so that the best one has its checkpoint.
  assert summary["steps"] == 6 and summary["stopped_early"]
  assert [p["step"] for p in summary["evaluations"]] == [2, 4, 6]
  assert all("train_mean_f1" in p and "train_loss" in p for p in summary["evaluations"])
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()
                if p.name.isdigit()) == [2, 4, 6]
  out = capsys.readouterr().out
  assert "early stop at step 6 of 12" in out
  assert "peaked at 0.000 at step 2 (3 evaluations); no improvement in the 2 evaluations" in out
  # The same command again: the run is over, nothing more is trained.
  again = train.train_and_evaluate(config, str(tmp_path))
  assert again["steps"] == 6 and again["stopped_early"]
  assert "stopped early before" in capsys.readouterr().out


@pytest.mark.slow  # two trainings in a row (~16 s)
def test_resume_continues_exactly_where_it_stopped(trained, synthetic_tfds, tmp_path):
  config, full_dir, _ = trained
  # The same run, stopped after its step-6 checkpoint, then restarted with the same command.
  stopped = loop_config(synthetic_tfds, num_steps=6, eval_every_steps=6,
                        checkpoint_every_steps=6)
  train.train_and_evaluate(stopped, str(tmp_path))
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["steps"] == 12
  mngr = checkpoints.manager(full_dir, config)
  a = mngr.restore(12)["state"]["params"]
  b = checkpoints.manager(tmp_path, config).restore(12)["state"]["params"]
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_fine_tune_from_another_run_maps_label_tokens_by_name(trained):
  # Pretrain -> fine-tune: a 12-AU run initialises a 17-AU model, tokens matched by AU name.
  config, source_dir, _ = trained
  union = tiny.get_config()
  model = models.build_model(union.model, num_labels=17)
  fresh = model.init(jax.random.key(1), jnp.zeros((1, 64, 64, 3)))
  params, stats, report = checkpoints.load_params_from(
      source_dir, fresh["params"], fresh["batch_stats"], "union17")
  source = checkpoints.manager(source_dir, config).restore(12)["state"]
  src_tokens = np.asarray(source["params"]["label_decoder"]["label_tokens"])
  tokens = params["label_decoder"]["label_tokens"]
  for i, au in enumerate(aus.UNION17):
    if au in aus.AFFWILD2:  # loaded from the source run
      np.testing.assert_array_equal(tokens[i], src_tokens[aus.AFFWILD2.index(au)])
    else:  # new: keeps its fresh initialisation
      np.testing.assert_array_equal(tokens[i], fresh["params"]["label_decoder"]["label_tokens"][i])
  assert report["new_label_tokens"] == ["AU5", "AU9", "AU14", "AU17", "AU20"]
  assert report["dropped_label_tokens"] == [] and len(report["loaded_label_tokens"]) == 12
  np.testing.assert_array_equal(params["backbone"]["tokens"]["conv"]["kernel"],
                                source["params"]["backbone"]["tokens"]["conv"]["kernel"])


def source_params(workdir, which="best"):
  """The params of a run's checkpoint `which`, as its Orbax manager records them."""
  config = runtime.load_config(workdir)
  mngr = checkpoints.manager(workdir, config)
  return jax.device_get(mngr.restore(checkpoints.select_step(mngr, which))["state"]["params"])


@pytest.mark.slow  # a training of its own (~16 s)
def test_fine_tune_run_starts_from_the_source(trained, synthetic_tfds, tmp_path):
  # Every group frozen: the run's step-1 checkpoint holds exactly the params it started from.
  _, source_dir, _ = trained
  config = loop_config(synthetic_tfds, num_steps=1, eval_every_steps=1,
                       checkpoint_every_steps=1)
  config.data.label_space = "union17"
  config.augment.mixup = False
  config.optim.frozen = ("backbone", "patch_encoder", "label_decoder")
  config.init_from = str(source_dir)
  train.train_and_evaluate(config, str(tmp_path))
  started = source_params(tmp_path, "latest")
  source = source_params(source_dir, "best")
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(started),
                          jax.tree.leaves(source)):
    if "label_tokens" not in jax.tree_util.keystr(path):
      np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
  tokens = started["label_decoder"]["label_tokens"]
  src_tokens = source["label_decoder"]["label_tokens"]
  for i, au in enumerate(aus.UNION17):
    if au in aus.AFFWILD2:
      np.testing.assert_array_equal(tokens[i], src_tokens[aus.AFFWILD2.index(au)])


def copy_run(source, folder):
  """A copy of a run's workdir (config.json and checkpoints)."""
  shutil.copytree(source, folder, ignore=shutil.ignore_patterns("events.out.*", "*.png"))
  return folder


def test_init_from_picks_the_best_checkpoint_as_orbax_records_it(trained, tmp_path):
  # A save cut short leaves an Orbax temporary folder; an unreadable checkpoint is set aside
  # as 'N.unreadable': neither is a checkpoint. The best one is the one Orbax ranks best.
  config, source_dir, _ = trained
  source = copy_run(source_dir, tmp_path / "source")
  (source / "checkpoints" / "13.orbax-checkpoint-tmp-1700000000").mkdir()
  (source / "checkpoints" / "14.unreadable").mkdir()
  # Step 6 recorded as the best (the tiny run's evaluations may tie): best is not latest.
  (source / "checkpoints" / "6" / "metrics" / "metrics").write_text(
      json.dumps({checkpoints.BEST_METRIC: 0.5}))
  model = models.build_model(config.model, num_labels=12)
  fresh = model.init(jax.random.key(1), jnp.zeros((1, 64, 64, 3)))
  mngr = checkpoints.manager(source_dir, config)
  for which, step in (("best", 6), ("latest", 12), ("12", 12)):
    params, _, report = checkpoints.load_params_from(
        source, fresh["params"], fresh["batch_stats"], "abaw3_au", which=which)
    assert report["source"].endswith(f"/checkpoints/{step}"), (which, report["source"])
    want = jax.device_get(mngr.restore(step)["state"]["params"])
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(want)):
      np.testing.assert_array_equal(a, b)
  assert (source / "checkpoints" / "13.orbax-checkpoint-tmp-1700000000").is_dir()  # untouched
  with pytest.raises(checkpoints.CheckpointError, match="no checkpoint for step 7"):
    checkpoints.load_params_from(source, fresh["params"], fresh["batch_stats"], "abaw3_au",
                                 which="7")
  # Naming a set-aside folder itself is refused, not answered with its parent's best.
  shutil.copytree(source / "checkpoints" / "12", source / "checkpoints" / "15.unreadable",
                  dirs_exist_ok=True)
  with pytest.raises(checkpoints.CheckpointError, match="15.unreadable'?: not a checkpoint "
                     "Orbax records"):
    checkpoints.load_params_from(source / "checkpoints" / "15.unreadable", fresh["params"],
                                 fresh["batch_stats"], "abaw3_au")


def test_resuming_with_another_model_stops_in_one_line_touching_nothing(trained,
                                                                        synthetic_tfds,
                                                                        tmp_path):
  # configs/tiny.py trained with model.d_model 16, then the same workdir with 32.
  _, source_dir, _ = trained
  workdir = copy_run(source_dir, tmp_path / "run")
  before = {p.relative_to(workdir): p.read_bytes() for p in sorted(workdir.rglob("*"))
            if p.is_file() and (p.name == "config.json" or "checkpoints" in p.parts)}
  r = subprocess.run(
      [sys.executable, "-m", "mlt_flax.main", "--config=configs/tiny.py",
       f"--workdir={workdir}", f"--config.data.data_dir={synthetic_tfds}",
       "--config.train.batch_size=16", "--config.train.num_steps=20",
       "--config.model.d_model=32"],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert r.returncode == 1, r.stderr[-3000:]
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f"error: {workdir}: refusing to resume"), (
      r.stderr[-3000:])
  assert "model.d_model 16 -> 32" in lines[0]
  after = {p.relative_to(workdir): p.read_bytes() for p in sorted(workdir.rglob("*"))
           if p.is_file() and (p.name == "config.json" or "checkpoints" in p.parts)}
  assert after == before  # checkpoints and config.json byte for byte


def test_init_from_a_mismatched_model_names_the_parameter(trained, synthetic_tfds, tmp_path):
  _, source_dir, _ = trained
  config = loop_config(synthetic_tfds, num_steps=1)
  config.model.d_model = 32
  config.init_from = str(source_dir)
  with pytest.raises(checkpoints.CheckpointError, match="parameter .* has shape"):
    train.train_and_evaluate(config, str(tmp_path))
