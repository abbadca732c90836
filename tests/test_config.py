"""Configs are `get_config()` functions; bad settings are refused at start, naming the field."""

import importlib
import json
import pathlib
import subprocess
import sys

import pytest

from configs import abaw3
from configs import demo
from configs import from_scratch
from configs import pretrain_bp4d_disfa
from configs import pretrain_mixture
from mlt_flax import configuration

ROOT = pathlib.Path(__file__).resolve().parents[1]


SHIPPED = sorted(p.stem for p in (ROOT / "configs").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_are_valid(name):
  configuration.validate(importlib.import_module(f"configs.{name}").get_config())


def test_the_from_scratch_config_is_the_demo_recipe_sized_in_epochs_with_early_stopping():
  scratch, base = from_scratch.get_config(), demo.get_config()
  for group in ("model", "augment", "loss", "optim"):
    assert scratch[group].to_dict() == base[group].to_dict(), group
  t = scratch.train
  assert (t.num_steps, t.num_epochs, t.batch_size) == (0, 20, base.train.batch_size)
  assert t.early_stopping_patience > 0 and not t.eval_at_start
  assert scratch.data.data_dir == configuration.defaults().data.data_dir
  assert scratch.eval.smoothing_window == configuration.defaults().eval.smoothing_window


def test_paper_numbers():
  c = abaw3.get_config()
  assert (c.model.image_size, c.model.d_model, c.model.num_heads, c.model.mlp_dim) == (
      299, 128, 8, 512)
  assert (c.model.num_encoder_layers, c.model.num_decoder_layers) == (1, 2)
  assert (c.model.dropout_rate, c.model.ln_epsilon, c.model.bn_epsilon) == (0.1, 1e-6, 1e-3)
  # backbone lr0: the authors' ABAW3 grids (5e-5); the paper's §4.2 text says 5e-4.
  assert (c.optim.backbone_lr, c.optim.backbone_decay, c.optim.eps) == (5e-5, 0.99, 1e-7)
  assert (c.model.mlp_residual_dropout, c.optim.weight_decay_mask) == (True, "all")
  assert (c.train.batch_size, c.train.num_epochs, c.data.frame_stride) == (64, 10, 5)
  assert (c.loss.dice_weight, c.eval.smoothing_window) == (0.5, 20)


def test_pretraining_configs_use_the_17_au_grids_backbone_lr():
  # src/hp_grids/au_merge/main/*.json opt_var0_encoder: 5e-4 (the paper's value too).
  for module in (pretrain_bp4d_disfa, pretrain_mixture):
    c = module.get_config()
    configuration.validate(c)
    assert c.optim.backbone_lr == 5e-4
  assert demo.get_config().optim.backbone_lr == 1e-3  # from scratch


def test_an_unknown_weight_decay_mask_is_named():
  c = abaw3.get_config()
  c.optim.weight_decay_mask = "biases"
  with pytest.raises(configuration.ConfigError, match=r"config.optim.weight_decay_mask = "
                     r"'biases': expected one of \('all', 'kernels'\)"):
    configuration.validate(c)


@pytest.mark.parametrize("field,value,message", [
    ("backbone", "resnet50", r"config.model.backbone = 'resnet50': expected one of"),
    ("image_size", -3, r"config.model.image_size = -3: expected a positive integer"),
    ("image_size", 60, r"config.model.image_size = 60: expected at least 75 pixels"),
    ("num_heads", 3, r"config.model.d_model = 128: expected a multiple of model.num_heads=3"),
    ("dropout_rate", 1.5, r"config.model.dropout_rate = 1.5"),
    ("decoder_layout", "deep", r"config.model.decoder_layout = 'deep'"),
    ("dtype", "float16", r"config.model.dtype = 'float16'"),
])
def test_bad_model_fields_are_named(field, value, message):
  c = abaw3.get_config()
  setattr(c.model, field, value)
  with pytest.raises(configuration.ConfigError, match=message):
    configuration.validate(c)


def test_mixup_with_partial_labels_is_refused():
  c = abaw3.get_config()
  c.data.label_space = "union17"  # Aff-Wild2 does not code AU5, 9, 14, 17, 20
  with pytest.raises(configuration.ConfigError, match=r"config.augment.mixup = True: expected"):
    configuration.validate(c)
  c.augment.mixup = False
  configuration.validate(c)


def test_pretrained_inception_weights_need_the_inception_backbone():
  c = demo.get_config()
  c.model.pretrained = "inception_v3_fid.pt"
  with pytest.raises(configuration.ConfigError, match="config.model.pretrained"):
    configuration.validate(c)


def run_main(*args):
  return subprocess.run([sys.executable, "-m", "mlt_flax.main", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


def test_main_refuses_a_bad_override_with_one_line(tmp_path):
  r = run_main("--config=configs/tiny.py", f"--workdir={tmp_path}", "--config.model.image_size=8")
  assert r.returncode != 0
  assert "config.model.image_size = 8: expected at least 49 pixels" in r.stderr
  assert "Traceback" not in r.stderr


@pytest.mark.slow  # a subprocess of the entry point (the fast tier keeps the one above)
def test_main_refuses_an_unknown_field(tmp_path):
  r = run_main("--config=configs/tiny.py", f"--workdir={tmp_path}", "--config.model.depth=3")
  assert r.returncode != 0 and "depth" in r.stderr


@pytest.mark.slow  # the main entry point in a subprocess
def test_main_runs_the_model_on_real_photos(tmp_path):
  """`--mode=photo_demo` gives, for each photo, sigmoid(model(photo resized bilinear to the
  config's size, scaled to [-1, 1])) of the model initialised from config.seed; recomputed
  here from the config and the photo files, and the printed table holds the same values."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from configs import tiny  # pylint: disable=g-import-not-at-top
  from mlt_flax import assets  # pylint: disable=g-import-not-at-top
  from mlt_flax import aus  # pylint: disable=g-import-not-at-top
  from mlt_flax import models  # pylint: disable=g-import-not-at-top
  r = run_main("--config=configs/tiny.py", f"--workdir={tmp_path}", "--mode=photo_demo",
               "--config.data.label_space=union17", "--config.augment.mixup=False")
  assert r.returncode == 0, r.stderr[-2000:]
  report = json.loads((tmp_path / "photo_demo.json").read_text())
  config = tiny.get_config()
  names = aus.names(aus.label_space("union17"))  # 17 AUs: the label count is the space's
  assert len(names) == 17 and report["au_names"] == list(names)
  assert report["photos"] == list(config.demo.photos)
  size = config.model.image_size
  photos = np.stack([np.asarray(Image.open(assets.path(p)).convert("RGB").resize(
      (size, size), Image.BILINEAR)) for p in config.demo.photos])
  model = models.build_model(config.model, num_labels=17)
  x = photos.astype(np.float32) / 127.5 - 1.0
  variables = model.init(jax.random.key(config.seed), x[:1], train=False)
  expected = np.asarray(jax.nn.sigmoid(model.apply(variables, x, train=False)))
  assert report["num_parameters"] == sum(a.size for a in jax.tree.leaves(variables["params"]))
  # The JSON rounds to 4 decimals; float32 runs may differ by a few ulps.
  np.testing.assert_allclose(report["probabilities"], expected, atol=1e-4)
  # An untrained head is not constant: the photos get different probabilities.
  assert np.ptp(expected, axis=0).max() > 1e-3
  # The table: a header of the AU names, then one row per photo of its probabilities.
  lines = r.stdout.splitlines()
  header = next(i for i, line in enumerate(lines) if line.startswith("photo"))
  assert lines[header].split()[1:] == list(names)
  for photo, row, line in zip(config.demo.photos, expected, lines[header + 1:]):
    assert line.startswith(photo[:21])
    np.testing.assert_allclose([float(v) for v in line[22:].split()], row, atol=0.0051)
