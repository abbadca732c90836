"""The README's road to the paper, at test size: pretrain on BP4D + DISFA over the 17-AU union,
then the Aff-Wild2 mixture, then fine-tune on Aff-Wild2's 12 AUs from that run."""

import json
import shutil

import dataset_fixtures
import numpy as np
import pytest

from configs import abaw3
from configs import pretrain_bp4d_disfa
from configs import pretrain_mixture
from mlt_flax import configuration
from mlt_flax import input_pipeline
from mlt_flax import train
from mlt_flax.data import build

@pytest.fixture(scope="module")
def all_three(synthetic_tfds, tmp_path_factory):
  """BP4D and DISFA fixtures in their exact layouts, built next to a copy of the synthetic
  Aff-Wild2 (the shared one stays as it is for the other tests)."""
  root = tmp_path_factory.mktemp("licensed")
  data_dir = root / "tfds"
  shutil.copytree(synthetic_tfds, data_dir)
  dataset_fixtures.write_bp4d(root / "bp4d")
  dataset_fixtures.write_disfa(root / "disfa")
  build.build("bp4d", str(root / "bp4d"), str(data_dir))
  build.build("disfa", str(root / "disfa"), str(data_dir))
  return str(data_dir)


def tiny(config, data_dir):
  """The tiny model and loop of configs/tiny.py on a given experiment config."""
  m = config.model
  m.backbone, m.pretrained, m.image_size = "small_cnn", "", 64
  m.small_cnn_widths, m.small_cnn_features = (8, 16, 16), 16
  m.d_model, m.num_heads, m.mlp_dim, m.num_decoder_layers = 16, 2, 32, 1
  config.data.data_dir = data_dir
  t = config.train
  t.batch_size, t.num_steps, t.log_every_steps = 16, 2, 1
  t.eval_every_steps = t.checkpoint_every_steps = 2
  config.eval.batch_size = 16
  return config


def test_the_three_stages_validate_and_score_the_aus_of_their_label_space():
  # The road's configs, at test size: 17-AU union for both pretrainings (BP4D and DISFA
  # each lack some AU of it), then Aff-Wild2's 12.
  for get_config, num_aus in ((pretrain_bp4d_disfa.get_config, 17),
                              (pretrain_mixture.get_config, 17), (abaw3.get_config, 12)):
    config = tiny(get_config(), "unused")
    configuration.validate(config)
    assert input_pipeline.has_partial_labels(config) == (num_aus == 17)


@pytest.mark.slow  # three trainings in a row
def test_pretrain_then_fine_tune(all_three, tmp_path):
  stage1 = tiny(pretrain_bp4d_disfa.get_config(), all_three)
  configuration.validate(stage1)
  assert input_pipeline.has_partial_labels(stage1)  # BP4D lacks AU5, DISFA lacks AU7, ...
  s1 = train.train_and_evaluate(stage1, str(tmp_path / "pre1"))
  assert s1["steps"] == 2 and np.isfinite(s1["history"][-1]["train/loss"])

  stage2 = tiny(pretrain_mixture.get_config(), all_three)
  stage2.init_from = str(tmp_path / "pre1")
  s2 = train.train_and_evaluate(stage2, str(tmp_path / "pre2"))
  assert s2["steps"] == 2

  fine = tiny(abaw3.get_config(), all_three)
  fine.init_from = str(tmp_path / "pre2")
  s3 = train.train_and_evaluate(fine, str(tmp_path / "abaw3"))
  assert len([k for k in s3["final_eval"] if k.startswith("val_f1/")]) == 12  # 17 -> 12 AUs
  saved = json.loads((tmp_path / "abaw3" / "config.json").read_text())
  assert saved["init_from"] == str(tmp_path / "pre2")
