"""Test set-up: 8 fake CPU devices for the multi-device tests, set before JAX starts."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


import pytest  # noqa: E402  (after the XLA flags)


@pytest.fixture(scope="session")
def synthetic_tfds(tmp_path_factory):
  """A small synthetic Aff-Wild2-layout set, built by the real abaw3_au builder.

  Returns the TFDS data_dir. 4 training and 2 validation videos of 40 frames (some faceless,
  some -1 rows), 112x112: the layout and builder of the real thing, at test size.
  """
  from mlt_flax.data import build  # pylint: disable=g-import-not-at-top
  from mlt_flax.data import synthetic  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("synthetic")
  synthetic.generate(root / "manual", seed=0, num_train_videos=4, num_val_videos=2,
                     frames_per_video=40)
  build.build("abaw3_au", str(root / "manual"), str(root / "tfds"))
  return str(root / "tfds")


def loop_config(data_dir, **train_fields):
  """The tiny config on a built dataset, with train fields overridden."""
  from configs import tiny  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  config.data.data_dir = data_dir
  config.train.batch_size = 16
  config.train.log_every_steps = 2
  for k, v in train_fields.items():
    setattr(config.train, k, v)
  return config


@pytest.fixture(scope="session")
def trained(synthetic_tfds, tmp_path_factory):
  """A whole tiny training on the synthetic set, on 8 devices: 12 steps, 2 checkpoints."""
  from mlt_flax import train  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp("run")
  config = loop_config(synthetic_tfds, num_steps=12, eval_every_steps=6,
                       checkpoint_every_steps=6)
  summary = train.train_and_evaluate(config, str(workdir))
  return config, workdir, summary
