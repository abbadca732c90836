"""The terminal: a short story on the terminal, the full log in the workdir."""

import io
import logging
import os
import sys
import threading

import pytest

from mlt_flax import console


@pytest.fixture
def restored_hooks():
  """console.setup replaces process-wide hooks and handlers; put them back afterwards."""
  saved = (sys.excepthook, sys.unraisablehook, threading.excepthook,
           list(logging.getLogger().handlers), logging.getLogger().level)
  yield
  sys.excepthook, sys.unraisablehook, threading.excepthook, handlers, level = saved
  root = logging.getLogger()
  for handler in list(root.handlers):
    root.removeHandler(handler)
    if handler not in handlers:
      handler.close()
  for handler in handlers:
    root.addHandler(handler)
  root.setLevel(level)


def in_a_thread(fn):
  thread = threading.Thread(target=fn, name="library-worker")
  thread.start()
  thread.join()


def test_library_info_goes_to_the_log_file_and_warnings_to_the_terminal(
    tmp_path, capsys, restored_hooks):
  path = console.setup(tmp_path, echo=False)
  logging.getLogger("orbax").info("saved checkpoint 3")
  logging.getLogger("mlt_flax.train").warning("validation F1 is nan")
  err = capsys.readouterr().err
  assert "saved checkpoint 3" not in err and "WARNING: validation F1 is nan" in err
  log = path.read_text()
  assert "saved checkpoint 3" in log and "validation F1 is nan" in log


def test_a_library_threads_failure_is_logged_not_printed(tmp_path, capsys, restored_hooks):
  path = console.setup(tmp_path, echo=False)

  def dies():
    raise RuntimeError("Event loop is closed")

  class Callback:  # an exception Python cannot raise to anyone: sys.unraisablehook's
    def __del__(self):
      raise RuntimeError("callback after the loop closed")

  def unraisable():
    Callback()

  in_a_thread(dies)
  in_a_thread(unraisable)
  err = capsys.readouterr().err
  assert "Traceback" not in err and "Event loop" not in err, err
  log = path.read_text()
  assert "Event loop is closed" in log and "callback after the loop closed" in log
  assert log.count("Traceback (most recent call last)") == 2


def test_exit_with_error_is_one_line_and_the_rest_goes_to_the_log(tmp_path, restored_hooks):
  import subprocess  # pylint: disable=g-import-not-at-top
  script = (
      "import sys, threading; from mlt_flax import console\n"
      f"console.setup({str(tmp_path)!r}, echo=False)\n"
      "try:\n  raise FileNotFoundError('/data/x.txt not found')\n"
      "except FileNotFoundError as e:\n  console.exit_with_error(e)\n")
  r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                     timeout=120)
  assert r.returncode == 1
  assert r.stderr.strip().splitlines() == ["error: /data/x.txt not found"], r.stderr
  log = (tmp_path / console.LOG_FILE).read_text()
  assert "error: /data/x.txt not found" in log and "Traceback" in log


def test_progress_in_a_pipe_prints_a_line_per_tenth_of_the_run():
  out = io.StringIO()
  progress = console.Progress(200, stream=out)
  progress.note("loss 0.5")
  for step in range(1, 201):
    progress(step)
  lines = out.getvalue().splitlines()
  assert len(lines) == 10, lines
  assert lines[0].startswith("step 20/200 (10%)") and lines[0].endswith("; loss 0.5")
  assert lines[-1].startswith("step 200/200 (100%)") and "took" in lines[-1]


def test_ffmpeg_words_reach_the_log_also_when_opening_the_video_fails(caplog):
  from mlt_flax import media  # pylint: disable=g-import-not-at-top
  with caplog.at_level(logging.INFO, logger="mlt_flax.media"):
    with pytest.raises(media.FaceInputError):
      with media.libav_messages_to_log("clip.mp4"):
        os.write(2, b"moov atom not found\n")  # as libav writes it, from C
        raise media.FaceInputError("clip.mp4: cannot be read")
  assert "clip.mp4: FFmpeg says: moov atom not found" in caplog.text
