"""What a run prints on the terminal, and where the rest of its log goes.

The terminal tells a short story: stage headers, one progress line, summaries, and the
warnings that matter (ours, and any library's WARNING or worse). Everything else that JAX,
TensorFlow, TFDS, Orbax and clu log at INFO goes to a log file in the workdir (`log.txt`).
`--alsologtostderr` (absl's own flag) brings the full log back to the terminal.

Orbax logs the exception of a failed background checkpoint write with its traceback before
our code turns it into one line (`checkpoints.CheckpointError`); such tracebacks go to the
log file only.
"""

import contextlib
import logging
import os
import pathlib
import sys
import tempfile
import threading
import time
import types
import warnings

LOG_FILE = "log.txt"
_log_path: pathlib.Path | None = None  # set by setup()
_echo = False  # set by setup(): the full log is on the terminal
_FORMAT = "%(asctime)s %(levelname)s %(name)s %(filename)s:%(lineno)d] %(message)s"
_QUIET_LIBRARIES = ("absl", "tensorflow", "jax", "orbax", "clu", "tensorflow_datasets", "etils")


# Library warnings that say nothing to act on (the log file keeps them): TFDS looks into the
# version folder it is about to build.
_BENIGN = ("has no dataset_info.json",)


class _TerminalFilter(logging.Filter):
  """Keeps what a person should see: WARNING and worse, without library tracebacks."""

  def filter(self, record: logging.LogRecord) -> bool:
    if any(text in record.getMessage() for text in _BENIGN):
      return False
    if record.name == "py.warnings" and "mlt_flax" not in record.getMessage():
      return False  # third-party deprecation notices: the log file has them
    if not record.name.startswith("mlt_flax") and (
        record.exc_info or "Traceback (most recent call last)" in record.getMessage()):
      return False  # a background thread's traceback; our one-line error follows
    return True


@contextlib.contextmanager
def native_stderr_captured():
  """File descriptor 2, where C and C++ libraries write (TensorFlow's loader, FFmpeg, the
  tflite runtime), points at a temporary file for the duration; yields an object whose
  `text` is what was written there, once the block is over. Python's sys.stderr is flushed
  first; another thread's stderr line of that instant lands there too."""
  sys.stderr.flush()
  saved = os.dup(2)
  result = types.SimpleNamespace(text="")
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield result
    finally:
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      result.text = captured.read().decode(errors="replace").strip()


def quiet_native_logs() -> None:
  """Loads TensorFlow with its C++ start-up lines kept off the terminal.

  TF_CPP_MIN_LOG_LEVEL quiets TensorFlow's own INFO lines, but not the lines its C++ absl
  logging writes to file descriptor 2 while it loads ("All log messages before
  absl::InitializeLog() ...", "oneDNN custom operations are on"): those are discarded by
  pointing descriptor 2 elsewhere for the import. Errors after that reach the terminal.
  """
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  if "tensorflow" in sys.modules:
    return
  with native_stderr_captured():  # discarded
    try:
      import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
    except ImportError:
      pass


def setup(log_dir, *, echo: bool | None = None) -> pathlib.Path | None:
  """Routes Python logging: everything to <log_dir>/log.txt, warnings to the terminal.

  echo: also print the full log on the terminal (default: absl's --alsologtostderr).
  Returns the log file's path (None when log_dir is None: terminal only).
  """
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  if echo is None:
    echo = _absl_flag("alsologtostderr") or _absl_flag("logtostderr")
  root = logging.getLogger()
  for handler in list(root.handlers):
    if getattr(handler, "_mlt_console", False) or isinstance(
        handler, absl_logging.ABSLHandler):
      root.removeHandler(handler)
  root.setLevel(logging.INFO)
  absl_logging.set_verbosity(absl_logging.INFO)  # absl sends its records on to the handlers
  logging.captureWarnings(True)
  warnings.simplefilter("default")
  terminal = logging.StreamHandler(sys.stderr)
  terminal.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
  terminal.setLevel(logging.INFO if echo else logging.WARNING)
  if not echo:
    terminal.addFilter(_TerminalFilter())
  terminal._mlt_console = True  # pylint: disable=protected-access
  root.addHandler(terminal)
  # A library's worker thread that dies prints its traceback straight to stderr; log it
  # instead (the file keeps it; the caller turns the failure into one line).
  threading.excepthook = lambda args: logging.getLogger("threads").error(
      "exception in thread %s", getattr(args.thread, "name", "?"),
      exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
  # A native library's callback thread (tensorstore's, under Orbax) reports an exception it
  # cannot raise through sys.unraisablehook or sys.excepthook; off the main thread, log it.
  sys.excepthook = _excepthook
  sys.unraisablehook = _unraisablehook
  path = None
  if log_dir is not None and _is_main_process():
    path = pathlib.Path(log_dir) / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(path)
    to_file.setFormatter(logging.Formatter(_FORMAT))
    to_file._mlt_console = True  # pylint: disable=protected-access
    root.addHandler(to_file)
  global _log_path
  _log_path = path
  global _echo
  _echo = echo
  libraries_loaded()
  return path


def libraries_loaded() -> None:
  """The libraries imported so far log INFO into the log file, and TFDS's progress bars stay
  off the terminal (unless setup echoes the full log). setup() calls it; a program that
  imports JAX or TensorFlow after setup() (predict's JAX backend) calls it again then.

  A library not yet imported is left alone: JAX takes its logger's level at import as its
  own logging level, and INFO there would turn on its own stderr handler and C++ INFO lines.
  """
  for name in _QUIET_LIBRARIES:
    if name in sys.modules:
      logging.getLogger(name).setLevel(logging.INFO)
  tfds = sys.modules.get("tensorflow_datasets")  # never imported here: a light CLI stays light
  if tfds is not None and not _echo:
    tfds.disable_progress_bar()


def _excepthook(exc_type, exc_value, exc_traceback) -> None:
  if threading.current_thread() is threading.main_thread():
    sys.__excepthook__(exc_type, exc_value, exc_traceback)
  else:
    logging.getLogger("threads").error(
        "exception in a library's callback thread %s", threading.current_thread().name,
        exc_info=(exc_type, exc_value, exc_traceback))


def _unraisablehook(unraisable) -> None:
  if threading.current_thread() is threading.main_thread():
    sys.__unraisablehook__(unraisable)
  else:
    logging.getLogger("threads").error(
        "exception ignored in a library's callback thread %s: %s",
        threading.current_thread().name, unraisable.err_msg or unraisable.object,
        exc_info=(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback))


def exit_with_error(error) -> None:
  """Ends the program with one line on the terminal: `error: <error>`, exit status 1.

  What is printed after that line while the interpreter shuts down goes to the log file (or
  nowhere, without one): a library's background threads (Orbax's asynchronous checkpoint
  writers, tensorstore's callbacks) may still report on an event loop that has closed, and
  those tracebacks say nothing the line above has not.
  """
  sys.stdout.flush()
  sys.stderr.write(f"error: {error}\n")
  sys.stderr.flush()
  if _log_path:  # the file keeps the line with its traceback; the terminal has had its line
    root = logging.getLogger()
    for handler in list(root.handlers):
      if getattr(handler, "_mlt_console", False) and not isinstance(handler, logging.FileHandler):
        root.removeHandler(handler)
    logging.getLogger("mlt_flax").error("error: %s", error,
                                        exc_info=isinstance(error, BaseException))
  sink = open(_log_path if _log_path else os.devnull, "a")  # pylint: disable=consider-using-with
  os.dup2(sink.fileno(), 2)
  sys.stderr = sink
  raise SystemExit(1)


def _absl_flag(name: str) -> bool:
  from absl import flags  # pylint: disable=g-import-not-at-top
  return bool(flags.FLAGS.is_parsed() and name in flags.FLAGS and flags.FLAGS[name].value)


def _is_main_process() -> bool:
  """Process 0 writes the log file (call after jax.distributed.initialize, if any); a process
  that has not loaded JAX (predict --model) is the only one."""
  jax = sys.modules.get("jax")
  return jax is None or jax.process_index() == 0


def stage(title: str) -> float:
  """Prints a stage header; returns the time it started."""
  print(f"\n=== {title}", flush=True)
  return time.perf_counter()


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
  """One progress line over the steps of a loop: steps/s, percent done and ETA.

  On a terminal the line is rewritten in place; in a log or a pipe a line is printed at
  every `fraction` of the steps (10 lines a run), so that captured output stays short.
  """

  def __init__(self, total_steps: int, start_step: int = 0, *, label: str = "step",
               fraction: float = 0.1, stream=None, enabled: bool = True):
    self.total, self.label, self.enabled = total_steps, label, enabled
    self.stream = stream or sys.stdout
    self.tty = self.stream.isatty()
    self.every = max(1, int(round((total_steps - start_step) * fraction)))
    self._t0, self._s0 = time.perf_counter(), start_step
    self._last_print = start_step
    self._extra = ""

  def note(self, text: str) -> None:
    """Text shown at the end of the line from now on (e.g. the last validation F1)."""
    self._extra = text

  def __call__(self, step: int) -> None:
    if not self.enabled:
      return
    done = step == self.total
    if not (self.tty or done or step - self._last_print >= self.every):
      return
    if self.tty and not done and time.perf_counter() - getattr(self, "_t_print", 0) < 0.5:
      return
    self._t_print = time.perf_counter()
    self._last_print = step
    elapsed = time.perf_counter() - self._t0
    rate = (step - self._s0) / elapsed if elapsed > 0 else 0.0
    eta = (self.total - step) / rate if rate > 0 else 0.0
    line = (f"{self.label} {step}/{self.total} ({100 * step / self.total:.0f}%), "
            f"{rate:.1f} {self.label}s/s, " +
            (f"took {_duration(elapsed)}" if done else f"ETA {_duration(eta)}") +
            (f"; {self._extra}" if self._extra else ""))
    if self.tty:
      self.stream.write("\r\033[K" + line + ("\n" if done else ""))
    else:
      self.stream.write(line + "\n")
    self.stream.flush()

  def interrupt(self) -> None:
    """Ends a rewritten line before other output is printed below it."""
    if self.enabled and self.tty:
      self.stream.write("\n")
