"""What the command lines share: the multi-host flags and JAX's multi-controller start-up.

Several hosts: start the same command on each, with --coordinator_address=HOST:PORT,
--num_processes=N and --process_id=i (or on a cluster JAX detects by itself, SLURM or Cloud
TPU, with none of them): JAX's own runtime (`jax.distributed`) connects the processes.
"""

import os

from absl import flags

FLAGS = flags.FLAGS
_CLUSTER_ENV = ("SLURM_JOB_ID", "TPU_WORKER_HOSTNAMES", "OMPI_COMM_WORLD_SIZE")


def define_distributed_flags():
  flags.DEFINE_string("coordinator_address", None,
                      "HOST:PORT of process 0, for several hosts (jax.distributed).")
  flags.DEFINE_integer("num_processes", 1, "Number of processes (hosts) in the run.")
  flags.DEFINE_integer("process_id", 0, "This process's index in [0, num_processes).")


def initialize_distributed():
  """Connects this process to the others (after XLA flags are set, before JAX computes)."""
  import jax  # pylint: disable=g-import-not-at-top
  if FLAGS.num_processes > 1:
    if os.environ.get("MLT_CPU_COLLECTIVES"):  # several CPU processes on one machine (tests)
      jax.config.update("jax_cpu_collectives_implementation",
                        os.environ["MLT_CPU_COLLECTIVES"])
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
  elif any(v in os.environ for v in _CLUSTER_ENV):
    jax.distributed.initialize()
