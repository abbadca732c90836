"""The Aff-Wild2 (ABAW3 AU track) challenge format: its folders and its label files.

See docs/datasets.md, "## Aff-Wild2 (ABAW3 AU track)"::

  cropped_aligned/<video>/<frame:05d>.jpg                 112x112 face crops, 1-based numbers;
                                                          frames with no face are absent
  <any folders>/AU_Detection_Challenge/Train_Set/<video>.txt       header AU1,...,AU26, then
  <any folders>/AU_Detection_Challenge/Validation_Set/<video>.txt  line i = frame i: 0, 1, -1
  <any folders>/AU_Detection_Challenge/Test_Set/<video>.txt        optional: a labelled test
                                                                   split, same format

The ``abaw3_au`` builder reads this layout and the synthetic generator writes it, both from
the names here.
"""

import os
import re
from typing import Sequence

import numpy as np

from mlt_flax import aus
from mlt_flax.data import label_files

# The AUs of every label line, in the header's order.
AUS = aus.AFFWILD2
# The values a data line may hold.
VALUES = (label_files.NOT_ANNOTATED, 0, 1)
# The challenge's label folder (found anywhere under the manual dir) and its split folders.
LABELS_FOLDER = "AU_Detection_Challenge"
SPLIT_FOLDERS = {"train": "Train_Set", "validation": "Validation_Set", "test": "Test_Set"}
# Splits a manual dir may lack: the challenge shipped no test labels, while the project's
# generators write a labelled test split that nothing (steps, checkpoints, thresholds) selects on.
OPTIONAL_SPLITS = ("test",)
LABEL_SUFFIX = ".txt"
# The face crops: cropped_aligned/<video>/<frame:05d>.jpg (readers take any zero-padding).
IMAGES_FOLDER = "cropped_aligned"
FRAME_NAME = "{:05d}.jpg"
# A video of two people is two videos, <name>_left and <name>_right, of subject <name>.
PAIR_SUFFIXES = ("_left", "_right")
_PAIR_SUFFIX = re.compile("(" + "|".join(PAIR_SUFFIXES) + ")$")


def header() -> str:
  """The exact first line of every challenge label file."""
  return ",".join(aus.names(AUS))


def parse_labels(lines: Sequence[str], path: os.PathLike | str,
                 problems: label_files.Problems) -> label_files.LabelTable:
  """Parses one ``AU_Detection_Challenge/{Train,Validation}_Set/<video>.txt``.

  Format: header ``AU1,AU2,...,AU26`` (aus.AFFWILD2), then data line i (file line i + 1) is
  frame i with 12 values in {-1, 0, 1}. All -1 rows are kept as they are. Spaces around
  fields (header or values), a UTF-8 BOM and CRLF line ends are accepted.

  Args:
    lines: the file's lines (``label_files.read_lines``).
    path: the file, for messages.
    problems: where malformed lines go; a skipped line still takes its frame number.

  Returns:
    The video's LabelTable over aus.AFFWILD2.

  Raises:
    DatasetFormatError: empty file, wrong header or no data line (always), or a bad data line
      (unless ``problems.skip_bad``).
  """
  expected = header()
  if not lines:
    raise label_files.DatasetFormatError(
        f"{path}: empty label file; expected the header {expected!r}")
  # Spaces around a header field are accepted, as around a value; names and order are exact.
  if label_files.split_fields(lines[0]) != list(aus.names(AUS)):
    raise label_files.DatasetFormatError(
        f"{path}:1: header is {lines[0].strip()!r}; expected {expected!r}")
  if len(lines) == 1:
    raise label_files.DatasetFormatError(
        f"{path}: no data lines after the header; expected one line per frame")
  num_aus = len(AUS)
  columns = [f"{name} (field {i})" for i, name in enumerate(aus.names(AUS), start=1)]
  rows = {}
  for frame, line in enumerate(lines[1:], start=label_files.FIRST_FRAME):
    line_no = frame + 1  # the header is line 1
    fields = label_files.split_fields(line)
    if len(fields) != num_aus:
      problems.bad_line(path, line_no,
                        f"{len(fields)} fields; expected {num_aus} values (one per AU)")
      continue
    values, reason = label_files.parse_values(fields, VALUES, columns)
    if reason:
      problems.bad_line(path, line_no, reason)
      continue
    rows[frame] = values
  return label_files.LabelTable.from_rows(rows, num_aus)


def format_labels(labels: np.ndarray) -> str:
  """(T, 12) int labels of frames 1..T -> the text of a challenge label file."""
  lines = [header()]
  lines += [",".join(str(int(v)) for v in row) for row in labels]
  return "\n".join(lines) + "\n"


def subject_of(video: str) -> str:
  """The person of a video: two-person videos ``<name>_left`` / ``<name>_right`` -> ``<name>``."""
  return _PAIR_SUFFIX.sub("", video)
