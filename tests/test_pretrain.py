"""The README's road to the paper, at test size: pretrain on BP4D + DISFA over the 17-AU union,
then the Aff-Wild2 mixture, then fine-tune on Aff-Wild2's 12 AUs from that run; and the
authors' chain, Aff-Wild2 alone at 17 AUs from stage 1. Each stage starts from exactly the
tensors of its source's best checkpoint."""

import json
import shutil

import dataset_fixtures
import jax
import numpy as np
import pytest

from configs import abaw3
from configs import pretrain_authors_abaw3
from configs import pretrain_bp4d_disfa
from configs import pretrain_mixture
from mlt_flax import aus
from mlt_flax import checkpoints
from mlt_flax import configuration
from mlt_flax import input_pipeline
from mlt_flax import runtime
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


FROZEN = ("backbone", "patch_encoder", "label_decoder")


def params_of(workdir, which):
  """The params of a run's checkpoint `which` ('best', 'latest'), as Orbax records them."""
  config = runtime.load_config(workdir)
  mngr = checkpoints.manager(workdir, config)
  try:
    return jax.device_get(mngr.restore(checkpoints.select_step(mngr, which))["state"]["params"])
  finally:
    mngr.close()


def assert_started_from(run_dir, source_dir, tokens):
  """The run's first checkpoint (every group frozen: the params it started from) holds the
  source's best checkpoint, label token i being the source's tokens[i]."""
  started, source = params_of(run_dir, "latest"), params_of(source_dir, "best")
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(started),
                          jax.tree.leaves(source)):
    if "label_tokens" not in jax.tree_util.keystr(path):
      np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
  np.testing.assert_array_equal(started["label_decoder"]["label_tokens"],
                                source["label_decoder"]["label_tokens"][tokens])



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

  # Each later stage trains with every group frozen, so that its first checkpoint holds
  # exactly the params it loaded.
  stage2 = tiny(pretrain_mixture.get_config(), all_three)
  stage2.init_from = str(tmp_path / "pre1")
  stage2.optim.frozen = FROZEN
  s2 = train.train_and_evaluate(stage2, str(tmp_path / "pre2"))
  assert s2["steps"] == 2
  assert_started_from(tmp_path / "pre2", tmp_path / "pre1", list(range(17)))  # 17 -> 17

  fine = tiny(abaw3.get_config(), all_three)
  fine.init_from = str(tmp_path / "pre2")
  fine.optim.frozen = FROZEN
  s3 = train.train_and_evaluate(fine, str(tmp_path / "abaw3"))
  assert len([k for k in s3["final_eval"] if k.startswith("val_f1/")]) == 12  # 17 -> 12 AUs
  assert_started_from(tmp_path / "abaw3", tmp_path / "pre2",
                      [aus.UNION17.index(a) for a in aus.AFFWILD2])
  saved = json.loads((tmp_path / "abaw3" / "config.json").read_text())
  assert saved["init_from"] == str(tmp_path / "pre2")

  # The authors' chain: from stage 1, Aff-Wild2 alone with all 17 label tokens kept.
  authors = tiny(pretrain_authors_abaw3.get_config(), all_three)
  configuration.validate(authors)
  assert authors.data.label_space == "union17" and authors.data.datasets == ("abaw3_au",)
  authors.init_from = str(tmp_path / "pre1")
  authors.optim.frozen = FROZEN
  s4 = train.train_and_evaluate(authors, str(tmp_path / "authors"))
  assert len([k for k in s4["final_eval"] if k.startswith("val_f1/")]) == 12  # scored AUs
  assert_started_from(tmp_path / "authors", tmp_path / "pre1", list(range(17)))
