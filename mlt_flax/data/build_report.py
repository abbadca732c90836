"""The report of a build: per split what was written and skipped, as JSON and as text.

``summary`` turns the ``examples.SplitStats`` of a build into a JSON-able report, which the
builders store in the dataset's metadata, write as ``<data_dir>/<name>/<version>/summary.json``
(``write_summary``) and print (``format_summary``); see docs/datasets.md, "## What the
builders write".
"""

import json
import os
import pathlib
from typing import Mapping, Sequence

from mlt_flax.data import examples

# How many locations of each kind of skipped input a summary lists, and rate precision.
MAX_REPORTED = 5
RATE_DECIMALS = 4
# The summary file written next to the dataset's shards.
SUMMARY_FILENAME = "summary.json"


def summary(dataset: str, au_names: Sequence[str], stats: Mapping[str, examples.SplitStats],
            skip_bad: bool) -> dict[str, object]:
  """A JSON-able report of a build: per split, counts, first skipped locations, AU rates.

  ``positive_rate`` of an AU is positives / frames where it is annotated (None if none is).
  """
  splits = {}
  for split, s in stats.items():
    rates = {}
    for i, name in enumerate(au_names):
      n = 0 if s.annotated is None else int(s.annotated[i])
      rates[name] = round(int(s.positives[i]) / n, RATE_DECIMALS) if n else None
    splits[split] = {
        "videos": len(s.videos),
        "subjects": len(s.subjects),
        "frames_written": s.frames_written,
        "faceless_frames_kept": s.faceless_frames,
        "frames_skipped_missing_image": len(s.missing_images) - s.faceless_frames,
        "bad_lines_skipped": len(s.problems.bad_lines),
        "bad_images_skipped": len(s.problems.bad_images),
        "unannotated_frames_kept": s.unannotated_frames,
        "positive_rate": rates,
        "first_missing_images": s.missing_images[:MAX_REPORTED],
        "first_bad_lines": s.problems.bad_lines[:MAX_REPORTED],
        "first_bad_images": s.problems.bad_images[:MAX_REPORTED],
    }
  return {"dataset": dataset, "skip_bad": skip_bad, "au_names": list(au_names),
          "splits": splits}


def format_summary(report: Mapping[str, object], details: bool = True) -> str:
  """The human-readable form of ``summary``'s report: a line per split, and with `details`
  each split's positive rates and first frames skipped (or kept faceless)."""
  lines = [f"{report['dataset']} build summary (skip_bad={report['skip_bad']}):"]
  for split, s in report["splits"].items():
    lines.append(
        f"  {split}: {s['videos']} videos, {s['subjects']} subjects, {s['frames_written']} "
        f"frames written ({s['unannotated_frames_kept']} with no AU annotated), " + (
            f"{s['faceless_frames_kept']} labelled frames without a face crop kept as "
            "face=False, " if s["faceless_frames_kept"] else "") +
        f"{s['frames_skipped_missing_image']} skipped for a missing image, "
        f"{s['bad_lines_skipped']} bad lines and {s['bad_images_skipped']} bad images skipped")
    if not details:
      continue
    rates = " ".join(f"{name}={'n/a' if r is None else f'{r:.3f}'}"
                     for name, r in s["positive_rate"].items())
    lines.append(f"    positive rate: {rates}")
    missing = "no face crop (kept, face=False)" if s["faceless_frames_kept"] else "no image"
    for key, title in (("first_missing_images", missing), ("first_bad_lines", "bad line"),
                       ("first_bad_images", "bad image")):
      for where in s[key]:
        lines.append(f"    {title}: {where}")
  if not details:
    lines.append(f"  (each split's positive rates and first frames skipped or kept faceless: "
                 f"{SUMMARY_FILENAME} beside the build)")
  return "\n".join(lines)


def write_summary(directory: os.PathLike | str, report: Mapping[str, object]) -> pathlib.Path:
  """Writes the report as ``<directory>/summary.json``; returns the path."""
  path = pathlib.Path(directory) / SUMMARY_FILENAME
  path.write_text(json.dumps(report, indent=2) + "\n")
  return path
