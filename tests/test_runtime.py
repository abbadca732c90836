"""The shared runtime: one compiled function per job, one F1, runs loaded without training."""

import json

import chex
import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from conftest import loop_config
from mlt_flax import checkpoints
from mlt_flax import evaluate
from mlt_flax import faces
from mlt_flax import input_pipeline
from mlt_flax import predict
from mlt_flax import runtime
from mlt_flax import train


def frames(n, size=112, seed=0):
  """n frames with a face crop, except every 7th (no face found)."""
  rng = np.random.default_rng(seed)
  for i in range(1, n + 1):
    crop = None if i % 7 == 0 else rng.integers(0, 256, (size, size, 3), np.uint8)
    yield faces.Frame(index=i, face=crop, box=None, source_shape=(size, size))


def test_predict_compiles_once_for_any_number_of_frames(trained, monkeypatch):
  # A fixed batch shape (the last batch padded): videos of any length reuse one compilation.
  _, workdir, _ = trained
  monkeypatch.setattr(runtime, "predict_step",
                      chex.assert_max_traces(runtime.predict_step, n=1))
  predictor = predict.JaxBackend(workdir)
  lengths = (1, 5, predictor.batch_size, 3 * predictor.batch_size + 2)
  for n in lengths:
    pred = predictor.run(frames(n), f"video{n}")
    assert pred.probs.shape == (n, 12)
    assert np.isnan(pred.probs[~pred.face_found]).all()
    assert np.isfinite(pred.probs[pred.face_found]).all()


def test_padding_and_batching_do_not_change_a_frame_s_probabilities(trained):
  _, workdir, _ = trained
  predictor = predict.JaxBackend(workdir)
  long = predictor.run(frames(40), "long")
  short = predictor.run(frames(3), "short")  # the same first 3 frames, in one padded batch
  np.testing.assert_allclose(short.probs, long.probs[:3], rtol=1e-5, atol=1e-6)


def test_the_train_step_and_evaluation_compile_once(synthetic_tfds, tmp_path, monkeypatch):
  # 4 steps with 3 evaluations (the untrained model's too) and 2 checkpoints: one trace of
  # the step, one of predict.
  monkeypatch.setattr(train, "train_step", chex.assert_max_traces(train.train_step, n=1))
  monkeypatch.setattr(runtime, "predict_step",
                      chex.assert_max_traces(runtime.predict_step, n=1))
  config = loop_config(synthetic_tfds, num_steps=4, eval_every_steps=2,
                       checkpoint_every_steps=2, eval_at_start=True)
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["steps"] == 4 and summary["untrained_eval"] is not None


def test_in_training_f1_is_the_report_s_f1(trained, tmp_path):
  # One F1: the score that picks the best checkpoint (strided, frames with a face crop) is
  # the report's 'strided' secondary row of the same checkpoint, AU by AU.
  config, workdir, summary = trained
  report = evaluate.evaluate(workdir, checkpoint="12", out_dir=tmp_path)
  in_training = summary["final_eval"]
  strided = report["secondary"]["strided"]["fixed_raw"]
  assert strided["per_au"] == {n: in_training[f"val_f1/{n}"] for n in runtime.au_names(config)}
  assert strided["mean"] == pytest.approx(in_training[checkpoints.BEST_METRIC], abs=1e-12)


def test_collect_returns_every_valid_row_once_in_video_frame_order(trained):
  config, workdir, _ = trained
  dp = runtime.DataParallel()
  run = runtime.load_run(workdir, "latest", dp)
  pred = runtime.predict_split(run, "validation", dp)
  keys = list(zip(pred["video"], pred["frame"]))
  assert keys == sorted(keys) and len(set(keys)) == len(keys)
  assert pred["probs"].shape == (len(keys), 12) and pred["labels"].shape == (len(keys), 12)
  assert ((pred["probs"] > 0) & (pred["probs"] < 1)).all()
  ds = input_pipeline.builder("abaw3_au", config.data.data_dir).as_dataset(
      split="validation", decoders={"image": tfds.decode.SkipDecoding()})
  expected = sorted((ex["video"].decode(), int(ex["frame"])) for ex in tfds.as_numpy(ds)
                    if ex["face"] and (int(ex["frame"]) - 1) % config.data.frame_stride == 0)
  assert keys == expected


def test_load_run_restores_without_the_training_loop(trained):
  config, workdir, _ = trained
  run = runtime.load_run(workdir, "best")
  assert run.step == checkpoints.manager(workdir, config).best_step()
  assert run.au_names[0] == "AU1" and len(run.au_names) == 12
  leaf = jax.tree.leaves(run.variables["params"])[0]
  assert leaf.sharding.is_fully_replicated


def test_a_run_stored_before_a_field_existed_takes_the_library_default(trained, tmp_path):
  _, workdir, _ = trained
  stored = json.loads((workdir / "config.json").read_text())
  del stored["eval"]["smoothing_windows"]  # as if the run predates the field
  (tmp_path / "config.json").write_text(json.dumps(stored))
  config = runtime.load_config(tmp_path)
  assert config.eval.smoothing_windows == (5, 10, 15, 20, 25)
  assert config.model.backbone == stored["model"]["backbone"]


def test_load_run_names_what_is_missing(tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json not found"):
    runtime.load_run(tmp_path)
  (tmp_path / "config.json").write_text("{\n  \"model\": \n")
  with pytest.raises(ValueError, match=r"config.json: line \d+: not valid JSON"):
    runtime.load_config(tmp_path)


def test_a_batch_that_does_not_split_over_the_devices_names_the_field():
  dp = runtime.DataParallel()
  with pytest.raises(ValueError, match=r"^config.eval.batch_size = 12: expected a multiple "
                                       r"of the device count 8"):
    dp.local_batch_size(12, "eval.batch_size")
