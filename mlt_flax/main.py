"""Entry point: `python -m mlt_flax.main --config=configs/abaw3.py --workdir=DIR`.

Flags are parsed with absl and ml_collections (`--config.model.dtype=bfloat16` overrides a
field); everything else happens in one importable function per mode.

Several hosts: start the same command on each, with --coordinator_address=HOST:PORT,
--num_processes=N and --process_id=i (or on a cluster JAX detects by itself, SLURM or Cloud
TPU, with no flag): JAX's own multi-controller runtime (`jax.distributed`) connects them.
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from mlt_flax import cli
from mlt_flax import console
from mlt_flax import xla_cpu

FLAGS = flags.FLAGS


def define_flags():
  """The entry point's flags (defined only when run as a program)."""
  flags.DEFINE_string("workdir", None, "Directory for outputs (checkpoints, logs, reports).",
                      required=True)
  flags.DEFINE_enum("mode", "train", ["train", "demo", "photo_demo"],
                    "train: train_and_evaluate; demo: synthetic data -> train -> evaluate -> "
                    "predict; photo_demo: the untrained model on real face photos.")
  cli.define_distributed_flags()
  config_flags.DEFINE_config_file("config", None, "Experiment config file, e.g. "
                                  "configs/abaw3.py; override fields with "
                                  "--config.<field>=<value>.", lock_config=True)
  flags.mark_flags_as_required(["config"])


def parse_flags(argv):
  """absl's parsing, with an unknown --config.<field> reported as one line, not a trace."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    sys.exit(f"error: {e}\nPass --helpfull to see the flags.")
  except (AttributeError, KeyError) as e:  # ml_collections: a field the config does not have
    field = next((a for a in argv if a.startswith("--config.")), "--config.?")
    sys.exit(f"error: {field.split('=')[0]}: the config has no such field ({e})")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  xla_cpu.apply_defaults()  # before anything starts JAX's backend
  from mlt_flax import checkpoints  # pylint: disable=g-import-not-at-top
  from mlt_flax import configuration  # pylint: disable=g-import-not-at-top
  config = FLAGS.config
  try:
    configuration.validate(config)
  except configuration.ConfigError as e:
    sys.exit(f"error: {e}")
  cli.initialize_distributed()
  import jax  # pylint: disable=g-import-not-at-top
  log_file = console.setup(FLAGS.workdir)
  logging.info("JAX process %d/%d, local devices: %s", jax.process_index(),
               jax.process_count(), jax.local_devices())
  if log_file:
    print(f"full log: {log_file}")
  try:
    if FLAGS.mode == "demo":
      from mlt_flax import demo  # pylint: disable=g-import-not-at-top
      run_mode = demo.run
    elif FLAGS.mode == "photo_demo":
      from mlt_flax import photo_demo  # pylint: disable=g-import-not-at-top
      run_mode = photo_demo.run
    else:
      from mlt_flax import train  # pylint: disable=g-import-not-at-top
      run_mode = train.train_and_evaluate
    # TensorFlow and TFDS came with the mode's module, after setup: their logs go to the
    # file and TFDS's progress bars stay off the terminal.
    console.libraries_loaded()
    run_mode(config, FLAGS.workdir)
  except (configuration.ConfigError, FileNotFoundError, FloatingPointError,
          checkpoints.CheckpointError) as e:
    console.exit_with_error(e)


def run():
  """The command line: flags, then `main`."""
  console.quiet_native_logs()
  define_flags()
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  run()
