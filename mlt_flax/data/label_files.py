"""Reading the AU datasets' label files: errors, lines, fields, and the tables they become.

Plain Python + NumPy so that it can be unit-tested on strings; the parser of each label format
builds on it (``affwild2_format``, ``bp4d_format``, ``disfa_format``), and the TFDS builders
(``abaw3_au``, ``bp4d``, ``disfa``) only wire the parsers, ``frames`` and ``examples`` together.

A parser turns the lines of one file into a ``LabelTable`` (1-based frame numbers + an int8
label matrix in the dataset's own AU order, -1 = not annotated). Every malformed line goes
through a ``Problems`` object, which either raises a ``DatasetFormatError`` naming the file
and line (default) or, with ``skip_bad``, records it for the build report (``build_report``).
"""

import dataclasses
import os
import pathlib
import re
from typing import Mapping, Sequence

import numpy as np

# Label value of an AU that is not annotated for a frame (Aff-Wild2's -1, BP4D's 9, ...).
NOT_ANNOTATED = -1
# The first frame number of label files (all three datasets count frames from 1), and the
# largest one we take: frame numbers are stored as int32.
FIRST_FRAME = 1
MAX_FRAME = np.iinfo(np.int32).max


class DatasetFormatError(ValueError):
  """A dataset file is not in the expected format.

  The message is one line: ``<file>[:<line>]: <what is wrong>; expected <what>``.
  """


class Problems:
  """Where malformed input goes: an error at the first one, or a record when ``skip_bad``.

  Attributes:
    skip_bad: record-and-skip instead of raising.
    bad_lines: ``"<file>:<line>: <reason>"`` of each skipped label line.
    bad_images: ``"<file>: <reason>"`` of each skipped image.
  """

  def __init__(self, skip_bad: bool = False):
    self.skip_bad = skip_bad
    self.bad_lines: list[str] = []
    self.bad_images: list[str] = []

  def bad_line(self, path: os.PathLike | str, line: int, what: str) -> None:
    """Reports malformed line ``line`` (1-based, counting the header) of ``path``."""
    message = f"{path}:{line}: {what}"
    if not self.skip_bad:
      raise DatasetFormatError(message + " (use --skip_bad to skip such lines)")
    self.bad_lines.append(message)

  def bad_image(self, path: os.PathLike | str, what: str) -> None:
    """Reports an image file that cannot be used."""
    message = f"{path}: {what}"
    if not self.skip_bad:
      raise DatasetFormatError(message + " (use --skip_bad to skip such images)")
    self.bad_images.append(message)


@dataclasses.dataclass(frozen=True)
class LabelTable:
  """The labels of one video.

  Attributes:
    frames: int32 [N], 1-based frame numbers, increasing.
    labels: int8 [N, L], 1 / 0 / -1 (not annotated), columns in the dataset's AU order.
  """
  frames: np.ndarray
  labels: np.ndarray

  @classmethod
  def from_rows(cls, rows: Mapping[int, Sequence[int]], num_aus: int) -> "LabelTable":
    """{frame: L labels} -> LabelTable sorted by frame."""
    frames = sorted(rows)
    labels = np.array([rows[f] for f in frames], dtype=np.int8).reshape(len(frames), num_aus)
    return cls(np.array(frames, dtype=np.int32), labels)


def read_lines(path: os.PathLike | str) -> list[str]:
  """The lines of a text label file, without line ends and without trailing blank lines.

  Trailing blank lines are a harmless editor artefact; a blank line elsewhere is kept so that
  the parser reports it (in Aff-Wild2 it would shift every later frame). Lines end at
  ``\n``, ``\r\n`` or ``\r`` only (not at the other characters ``str.splitlines`` breaks
  on, e.g. a stray form feed), so that line numbers in messages are the editor's.
  """
  try:
    text = pathlib.Path(path).read_bytes().decode("utf-8-sig")
  except UnicodeDecodeError as e:
    raise DatasetFormatError(f"{path}: not a UTF-8/ASCII text file ({e.reason})") from None
  except OSError as e:
    raise DatasetFormatError(f"{path}: cannot read the label file ({e.strerror})") from None
  lines = re.split(r"\r\n|\r|\n", text)
  while lines and not lines[-1].strip():
    lines.pop()
  return lines


def split_fields(line: str) -> list[str]:
  """The comma-separated fields of a line, without the spaces around them."""
  return [f.strip() for f in line.split(",")]


def parse_int(field: str) -> int | None:
  """A decimal integer field (``-1``, ``0``, ``12``), or None if the field is not one."""
  # Stricter than int(), which also takes "1_000", "+1" and non-ASCII digits.
  return int(field) if re.fullmatch(r"-?[0-9]+", field) else None


def parse_values(fields: Sequence[str], allowed: Sequence[int],
                 columns: Sequence[str]) -> tuple[list[int], str]:
  """Integer fields -> (values, ""), or ([], reason) at the first field that is not allowed.

  ``columns`` names each field in messages, e.g. ``"AU4 (field 3)"``.
  """
  values = []
  for field, column in zip(fields, columns):
    value = parse_int(field)
    if value is None:
      return [], f"{column} is {field!r}, not an integer; expected one of {list(allowed)}"
    if value not in allowed:
      return [], f"{column} is {value}, out of range; expected one of {list(allowed)}"
    values.append(value)
  return values, ""


def label_paths(folder: os.PathLike | str, pattern: str) -> list[pathlib.Path]:
  """The label files of a folder matching ``pattern``, sorted; hidden files (``._x.txt``
  left by macOS archivers) are not label files."""
  return sorted(p for p in pathlib.Path(folder).glob(pattern) if not p.name.startswith("."))


def fold_of(subject: str, folds: Mapping[str, Sequence[str]], source: os.PathLike | str) -> str:
  """The fold (split name) of a subject; a subject in no fold is a DatasetFormatError."""
  for name, subjects in folds.items():
    if subject in subjects:
      return name
  raise DatasetFormatError(
      f"{source}: subject {subject!r} is in no fold; expected one of the subjects of "
      f"{', '.join(folds)}")
