"""DISFA AU intensity files: ``ActionUnit_Labels/<SN>/<SN>_au<n>.txt``, one per AU.

See docs/datasets.md, "## DISFA".
"""

import os
from typing import Mapping, Sequence

from mlt_flax.data import label_files

# Intensities run 0-5 and an AU counts as present from intensity 2 (A-level traces off).
MIN_INTENSITY = 0
MAX_INTENSITY = 5
PRESENT_INTENSITY = 2
FIELDS = ("frame", "intensity")


def parse_intensities(lines: Sequence[str], path: os.PathLike | str,
                      problems: label_files.Problems) -> dict[int, int]:
  """Parses one ``ActionUnit_Labels/<SN>/<SN>_au<n>.txt``: lines ``frame,intensity``.

  Frames are 1-based integers, intensities integers 0-5; a frame listed twice is an error.

  Returns:
    {frame: intensity}.

  Raises:
    DatasetFormatError: empty file (always); a bad or duplicate line (unless skip_bad).
  """
  if not lines:
    raise label_files.DatasetFormatError(
        f"{path}: empty label file; expected lines 'frame,intensity'")
  first, last = label_files.FIRST_FRAME, label_files.MAX_FRAME
  intensities = {}
  allowed = range(MIN_INTENSITY, MAX_INTENSITY + 1)
  for line_no, line in enumerate(lines, start=1):
    fields = label_files.split_fields(line)
    if len(fields) != len(FIELDS):
      problems.bad_line(path, line_no, f"{len(fields)} fields; expected {len(FIELDS)} "
                        f"({','.join(FIELDS)!r})")
      continue
    frame, intensity = label_files.parse_int(fields[0]), label_files.parse_int(fields[1])
    if frame is None or frame < first:
      problems.bad_line(path, line_no, f"frame {fields[0]!r} is not an integer >= "
                        f"{first}; expected 'frame,intensity'")
      continue
    if frame > last:
      problems.bad_line(path, line_no, f"frame {frame} is out of range; expected at most "
                        f"{last}")
      continue
    if intensity is None:
      problems.bad_line(path, line_no, f"intensity {fields[1]!r} is not an integer; "
                        f"expected {MIN_INTENSITY}-{MAX_INTENSITY}")
      continue
    if intensity not in allowed:
      problems.bad_line(path, line_no, f"intensity {intensity} is out of range; expected "
                        f"{MIN_INTENSITY}-{MAX_INTENSITY}")
      continue
    if frame in intensities:
      problems.bad_line(path, line_no, f"frame {frame} appears twice; expected one line per "
                        "frame")
      continue
    intensities[frame] = intensity
  return intensities


def occurrence_table(intensities: Sequence[Mapping[int, int]]) -> label_files.LabelTable:
  """Per-AU {frame: intensity} (aus.DISFA order) -> occurrence labels.

  An AU is present (1) iff its intensity is >= PRESENT_INTENSITY, else 0; a frame that one AU
  file does not list is -1 for that AU. Frames are the union over all files.
  """
  frames = sorted(set().union(*intensities))
  rows = {
      f: [label_files.NOT_ANNOTATED if f not in per_au
          else int(per_au[f] >= PRESENT_INTENSITY)
          for per_au in intensities]
      for f in frames
  }
  return label_files.LabelTable.from_rows(rows, len(intensities))
