"""BP4D-Spontaneous AU occurrence files: ``AUCoding/AU_OCC/<subject>_<task>.csv``.

See docs/datasets.md, "## BP4D".
"""

import os
import pathlib
import re
from typing import Sequence

from mlt_flax import aus
from mlt_flax.data import label_files

# The header of the frame-number column, the occurrence values, and "unknown" (-> -1).
FRAME_COLUMN = 0
VALUES = (0, 1)
UNKNOWN = 9


def parse_occ(lines: Sequence[str], path: os.PathLike | str, problems: label_files.Problems,
              au_numbers: Sequence[int] = aus.BP4D) -> label_files.LabelTable:
  """Parses one ``AUCoding/AU_OCC/<subject>_<task>.csv``.

  Format: a header row of integers, column ``0`` holding frame numbers and every other column
  an AU number (more AUs than the standard 12); data rows hold the frame number then 0 / 1 /
  9 (unknown, -> -1), frame numbers increasing down the file. Every field must be an integer
  (an empty or cut field means a damaged file); only the values of the columns of
  ``au_numbers`` are range-checked and read.

  Args:
    lines: the file's lines (``label_files.read_lines``).
    path: the file, for messages.
    problems: where malformed rows go.
    au_numbers: the AUs to select, in output order.

  Returns:
    LabelTable over ``au_numbers`` with the file's own frame numbers (1-based in BP4D; the
    image files carry the same numbers).

  Raises:
    DatasetFormatError: empty file, a header that is not integers, lacks column 0 or one of
      ``au_numbers``, or no data row (always); a bad data row, a repeated frame or one not
      after the previous row's (unless skip_bad).
  """
  if not lines:
    raise label_files.DatasetFormatError(
        f"{path}: empty label file; expected a header row of integers")
  header = label_files.split_fields(lines[0])
  numbers = [label_files.parse_int(h) for h in header]
  if None in numbers:
    bad = header[numbers.index(None)]
    raise label_files.DatasetFormatError(
        f"{path}:1: header field {bad!r} is not an integer; expected a header row of integers "
        f"(column {FRAME_COLUMN} = frame number, others = AU numbers)")
  if len(set(numbers)) != len(numbers):
    raise label_files.DatasetFormatError(
        f"{path}:1: header repeats a column: {lines[0].strip()!r}")
  missing = [n for n in (FRAME_COLUMN, *au_numbers) if n not in numbers]
  if missing:
    raise label_files.DatasetFormatError(
        f"{path}:1: header lacks column(s) {missing}; expected column {FRAME_COLUMN} "
        f"(frame number) and the AUs {list(au_numbers)}")
  if len(lines) == 1:
    raise label_files.DatasetFormatError(
        f"{path}: no data rows after the header; expected one row per frame")
  frame_col = numbers.index(FRAME_COLUMN)
  au_cols = [numbers.index(n) for n in au_numbers]
  columns = [f"AU{n} (field {c + 1})" for n, c in zip(au_numbers, au_cols)]
  other_cols = [c for c in range(len(header)) if c != frame_col and c not in au_cols]
  rows = {}
  previous = None  # the frame of the last row read
  for line_no, line in enumerate(lines[1:], start=2):
    fields = label_files.split_fields(line)
    if len(fields) != len(header):
      problems.bad_line(path, line_no, f"{len(fields)} fields; expected {len(header)} "
                        "(one per header column)")
      continue
    frame = label_files.parse_int(fields[frame_col])
    if frame is None or frame < 0:
      problems.bad_line(path, line_no, f"frame number {fields[frame_col]!r} is not a "
                        "non-negative integer")
      continue
    if frame > label_files.MAX_FRAME:
      problems.bad_line(path, line_no, f"frame number {frame} is out of range; expected at "
                        f"most {label_files.MAX_FRAME}")
      continue
    if frame in rows:
      problems.bad_line(path, line_no, f"frame {frame} appears twice; expected one row per "
                        "frame")
      continue
    if previous is not None and frame < previous:
      problems.bad_line(path, line_no, f"frame {frame} after frame {previous}; expected "
                        "increasing frame numbers (a cut or reordered file?)")
      continue
    values, reason = label_files.parse_values([fields[c] for c in au_cols],
                                              (*VALUES, UNKNOWN), columns)
    bad = [c for c in other_cols if label_files.parse_int(fields[c]) is None]
    if not reason and bad:
      reason = (f"AU{numbers[bad[0]]} (field {bad[0] + 1}) is {fields[bad[0]]!r}, not an "
                "integer; expected an integer in every column")
    if reason:
      problems.bad_line(path, line_no, reason)
      continue
    rows[frame] = [label_files.NOT_ANNOTATED if v == UNKNOWN else v for v in values]
    previous = frame
  return label_files.LabelTable.from_rows(rows, len(au_numbers))


def subject_and_task(path: os.PathLike | str) -> tuple[str, str]:
  """``.../F001_T1.csv`` -> (subject ``F001``, task ``T1``)."""
  match = re.fullmatch(r"([^_]+)_([^_]+)\.csv", pathlib.Path(path).name)
  if not match:
    raise label_files.DatasetFormatError(
        f"{path}: file name is not <subject>_<task>.csv (e.g. F001_T1.csv)")
  return match.group(1), match.group(2)
