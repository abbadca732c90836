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
import jax
from ml_collections import config_flags

from mlt_flax import checkpoints
from mlt_flax import configuration
from mlt_flax import xla_cpu

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for outputs (checkpoints, logs, reports).")
flags.DEFINE_enum("mode", "train", ["train", "demo", "photo_demo"],
                  "train: train_and_evaluate; demo: synthetic data -> train -> evaluate -> "
                  "predict; photo_demo: the untrained model on real face photos.")
flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0, for several hosts.")
flags.DEFINE_integer("num_processes", 1, "Number of processes (hosts) in the run.")
flags.DEFINE_integer("process_id", 0, "This process's index in [0, num_processes).")
config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])

_CLUSTER_ENV = ("SLURM_JOB_ID", "TPU_WORKER_HOSTNAMES", "OMPI_COMM_WORLD_SIZE")


def _maybe_initialize_distributed():
  import os  # pylint: disable=g-import-not-at-top
  if FLAGS.num_processes > 1:
    if os.environ.get("MLT_CPU_COLLECTIVES"):  # several CPU processes on one machine (tests)
      jax.config.update("jax_cpu_collectives_implementation",
                        os.environ["MLT_CPU_COLLECTIVES"])
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
  elif any(v in os.environ for v in _CLUSTER_ENV):
    jax.distributed.initialize()


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
  config = FLAGS.config
  try:
    configuration.validate(config)
  except configuration.ConfigError as e:
    sys.exit(f"error: {e}")
  _maybe_initialize_distributed()
  logging.info("JAX process %d/%d, local devices: %s", jax.process_index(),
               jax.process_count(), jax.local_devices())
  try:
    if FLAGS.mode == "demo":
      from mlt_flax import demo  # pylint: disable=g-import-not-at-top
      demo.run(config, FLAGS.workdir)
    elif FLAGS.mode == "photo_demo":
      from mlt_flax import photo_demo  # pylint: disable=g-import-not-at-top
      photo_demo.run(config, FLAGS.workdir)
    else:
      from mlt_flax import train  # pylint: disable=g-import-not-at-top
      train.train_and_evaluate(config, FLAGS.workdir)
  except (configuration.ConfigError, FileNotFoundError, FloatingPointError,
          checkpoints.CheckpointError) as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
