"""What the command lines share: one `main`, the multi-host flags, JAX's multi-controller
start-up.

  if __name__ == "__main__":
    cli.main(define_flags, run, log_dir=lambda: FLAGS.output)

`main` defines the flags, then under absl's app.run: refuses stray arguments, sets XLA's CPU
defaults (before anything starts JAX's backend; no JAX import), connects the processes
(distributed=True), routes the log (console.setup) and calls `run()`; an expected error ends
the program with one line (console.exit_with_error): bad input (EXPECTED_ERRORS) and, when
the program loaded mlt_flax.checkpoints, a checkpoint that cannot be used.

Several hosts: start the same command on each, with --coordinator_address=HOST:PORT,
--num_processes=N and --process_id=i (or on a cluster JAX detects by itself, SLURM or Cloud
TPU, with none of them): JAX's own runtime (`jax.distributed`) connects the processes.
"""

import os
import sys
from typing import Callable

from absl import app
from absl import flags

from mlt_flax import console
from mlt_flax import xla_cpu

FLAGS = flags.FLAGS
EXPECTED_ERRORS = (FileNotFoundError, ValueError)  # bad input: one line, no traceback
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


def main(define_flags: Callable[[], None], run: Callable[[], None], *,
         log_dir: Callable[[], str | None], distributed: bool = False) -> None:
  """Runs a command line (see the module's docstring).

  log_dir: where the log file goes (called after the flags are parsed; None: terminal only).
  """
  define_flags()

  def absl_main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    xla_cpu.apply_defaults()  # before anything starts JAX's backend
    if distributed:
      initialize_distributed()
    console.setup(log_dir())
    try:
      run()
    except Exception as e:  # pylint: disable=broad-except  (filtered just below)
      # A light path (predict --model) never imports checkpoints: look, do not import.
      loaded = sys.modules.get("mlt_flax.checkpoints")
      if isinstance(e, EXPECTED_ERRORS + ((loaded.CheckpointError,) if loaded else ())):
        console.exit_with_error(e)
      raise

  app.run(absl_main)
