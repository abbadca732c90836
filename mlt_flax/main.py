"""Entry point: `python -m mlt_flax.main --config=configs/abaw3.py --workdir=DIR`.

Flags are parsed with absl and ml_collections (`--config.model.dtype=bfloat16` overrides a
field); everything else happens in one importable function.
"""

import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from mlt_flax import configuration
from mlt_flax import photo_demo

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for outputs (checkpoints, logs, reports).")
config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = FLAGS.config
  try:
    configuration.validate(config)
  except configuration.ConfigError as e:
    sys.exit(f"error: {e}")
  logging.info("JAX process %d/%d, local devices: %s", jax.process_index(),
               jax.process_count(), jax.local_devices())
  photo_demo.run(config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
