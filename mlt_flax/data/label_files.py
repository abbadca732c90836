"""The AU datasets' label files and frame folders, read without TFDS.

Everything here is plain Python + NumPy + PIL so that it can be unit-tested on strings and
small folders; the TFDS builders (``abaw3_au``, ``bp4d``, ``disfa``) only wire it together.

* Parsers, one per label format, turn the lines of one file into a ``LabelTable``
  (1-based frame numbers + an int8 label matrix in the dataset's own AU order, -1 = not
  annotated). Every malformed line goes through a ``Problems`` object, which either raises a
  ``DatasetFormatError`` naming the file and line (default) or, with ``skip_bad``, records it
  for the build summary.
* ``index_frames`` maps the frame files of one folder to their numbers, whatever the
  zero-padding of the names.
* ``read_image`` returns an image's encoded bytes after checking that they decode.
* ``generate_examples`` yields the TFDS examples of a list of ``Video``s and counts what it
  skipped into a ``SplitStats``; ``summary`` / ``format_summary`` / ``write_summary`` report it.
"""

import dataclasses
import io
import json
import os
import pathlib
import re
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image

from mlt_flax import aus

# Label value of an AU that is not annotated for a frame (Aff-Wild2's -1, BP4D's 9, ...).
NOT_ANNOTATED = -1
# Aff-Wild2 challenge files: the values a data line may hold.
AFFWILD2_VALUES = (NOT_ANNOTATED, 0, 1)
# BP4D AU_OCC files: header of the frame-number column, occurrence values, and "unknown".
BP4D_FRAME_COLUMN = 0
BP4D_VALUES = (0, 1)
BP4D_UNKNOWN = 9
# DISFA: intensities run 0-5 and an AU counts as present from intensity 2 (A-level traces off).
DISFA_MIN_INTENSITY = 0
DISFA_MAX_INTENSITY = 5
DISFA_PRESENT_INTENSITY = 2
DISFA_FIELDS = ("frame", "intensity")
# The first frame number of label files (all three datasets count frames from 1), and the
# largest one we take: frame numbers are stored as int32.
FIRST_FRAME = 1
MAX_FRAME = np.iinfo(np.int32).max

# Frame files we read, by lower-cased suffix, and the PIL formats we accept inside them.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IMAGE_FORMATS = ("JPEG", "PNG")
# JPEGs are decoded at 1/8 scale when validated: libjpeg still reads the whole stream (so a
# truncated file still fails) but skips most of the work on BP4D's 1040x1392 frames.
JPEG_DRAFT_SCALE = 8

# How many locations of each kind of skipped input a summary lists, and rate precision.
MAX_REPORTED = 5
RATE_DECIMALS = 4
# The summary file written next to the dataset's shards.
SUMMARY_FILENAME = "summary.json"


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


def _table(rows: Mapping[int, Sequence[int]], num_aus: int) -> LabelTable:
  """{frame: L labels} -> LabelTable sorted by frame."""
  frames = sorted(rows)
  labels = np.array([rows[f] for f in frames], dtype=np.int8).reshape(len(frames), num_aus)
  return LabelTable(np.array(frames, dtype=np.int32), labels)


# ---------------------------------------------------------------------------------------------
# Reading text.


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


def _fields(line: str) -> list[str]:
  return [f.strip() for f in line.split(",")]


def _int(field: str) -> int | None:
  """A decimal integer field (``-1``, ``0``, ``12``), or None if the field is not one."""
  # Stricter than int(), which also takes "1_000", "+1" and non-ASCII digits.
  return int(field) if re.fullmatch(r"-?[0-9]+", field) else None


def _parse_values(fields: Sequence[str], allowed: Sequence[int],
                  columns: Sequence[str]) -> tuple[list[int], str]:
  """Integer fields -> (values, ""), or ([], reason) at the first field that is not allowed.

  ``columns`` names each field in messages, e.g. ``"AU4 (field 3)"``.
  """
  values = []
  for field, column in zip(fields, columns):
    value = _int(field)
    if value is None:
      return [], f"{column} is {field!r}, not an integer; expected one of {list(allowed)}"
    if value not in allowed:
      return [], f"{column} is {value}, out of range; expected one of {list(allowed)}"
    values.append(value)
  return values, ""


# ---------------------------------------------------------------------------------------------
# Aff-Wild2 (ABAW3 AU track).


def affwild2_header() -> str:
  """The exact first line of every challenge label file."""
  return ",".join(aus.names(aus.AFFWILD2))


def parse_affwild2(lines: Sequence[str], path: os.PathLike | str,
                   problems: Problems) -> LabelTable:
  """Parses one ``AU_Detection_Challenge/{Train,Validation}_Set/<video>.txt``.

  Format: header ``AU1,AU2,...,AU26`` (aus.AFFWILD2), then data line i (file line i + 1) is
  frame i with 12 values in {-1, 0, 1}. All -1 rows are kept as they are. Spaces around
  fields (header or values), a UTF-8 BOM and CRLF line ends are accepted.

  Args:
    lines: the file's lines (``read_lines``).
    path: the file, for messages.
    problems: where malformed lines go; a skipped line still takes its frame number.

  Returns:
    The video's LabelTable over aus.AFFWILD2.

  Raises:
    DatasetFormatError: empty file, wrong header or no data line (always), or a bad data line
      (unless ``problems.skip_bad``).
  """
  expected = affwild2_header()
  if not lines:
    raise DatasetFormatError(f"{path}: empty label file; expected the header {expected!r}")
  # Spaces around a header field are accepted, as around a value; names and order are exact.
  if _fields(lines[0]) != list(aus.names(aus.AFFWILD2)):
    raise DatasetFormatError(
        f"{path}:1: header is {lines[0].strip()!r}; expected {expected!r}")
  if len(lines) == 1:
    raise DatasetFormatError(f"{path}: no data lines after the header; expected one line per "
                             "frame")
  num_aus = len(aus.AFFWILD2)
  columns = [f"{name} (field {i})" for i, name in enumerate(aus.names(aus.AFFWILD2), start=1)]
  rows = {}
  for frame, line in enumerate(lines[1:], start=FIRST_FRAME):
    line_no = frame + 1  # the header is line 1
    fields = _fields(line)
    if len(fields) != num_aus:
      problems.bad_line(path, line_no,
                        f"{len(fields)} fields; expected {num_aus} values (one per AU)")
      continue
    values, reason = _parse_values(fields, AFFWILD2_VALUES, columns)
    if reason:
      problems.bad_line(path, line_no, reason)
      continue
    rows[frame] = values
  return _table(rows, num_aus)


def affwild2_subject(video: str) -> str:
  """The person of a video: two-person videos ``<name>_left`` / ``<name>_right`` -> ``<name>``."""
  return re.sub(r"_(left|right)$", "", video)


# ---------------------------------------------------------------------------------------------
# BP4D.


def parse_bp4d_occ(lines: Sequence[str], path: os.PathLike | str, problems: Problems,
                   au_numbers: Sequence[int] = aus.BP4D) -> LabelTable:
  """Parses one ``AUCoding/AU_OCC/<subject>_<task>.csv``.

  Format: a header row of integers, column ``0`` holding frame numbers and every other column
  an AU number (more AUs than the standard 12); data rows hold the frame number then 0 / 1 /
  9 (unknown, -> -1), frame numbers increasing down the file. Every field must be an integer
  (an empty or cut field means a damaged file); only the values of the columns of
  ``au_numbers`` are range-checked and read.

  Args:
    lines: the file's lines (``read_lines``).
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
    raise DatasetFormatError(f"{path}: empty label file; expected a header row of integers")
  header = _fields(lines[0])
  numbers = [_int(h) for h in header]
  if None in numbers:
    bad = header[numbers.index(None)]
    raise DatasetFormatError(
        f"{path}:1: header field {bad!r} is not an integer; expected a header row of integers "
        f"(column {BP4D_FRAME_COLUMN} = frame number, others = AU numbers)")
  if len(set(numbers)) != len(numbers):
    raise DatasetFormatError(f"{path}:1: header repeats a column: {lines[0].strip()!r}")
  missing = [n for n in (BP4D_FRAME_COLUMN, *au_numbers) if n not in numbers]
  if missing:
    raise DatasetFormatError(
        f"{path}:1: header lacks column(s) {missing}; expected column {BP4D_FRAME_COLUMN} "
        f"(frame number) and the AUs {list(au_numbers)}")
  if len(lines) == 1:
    raise DatasetFormatError(f"{path}: no data rows after the header; expected one row per "
                             "frame")
  frame_col = numbers.index(BP4D_FRAME_COLUMN)
  au_cols = [numbers.index(n) for n in au_numbers]
  columns = [f"AU{n} (field {c + 1})" for n, c in zip(au_numbers, au_cols)]
  other_cols = [c for c in range(len(header)) if c != frame_col and c not in au_cols]
  rows = {}
  previous = None  # the frame of the last row read
  for line_no, line in enumerate(lines[1:], start=2):
    fields = _fields(line)
    if len(fields) != len(header):
      problems.bad_line(path, line_no, f"{len(fields)} fields; expected {len(header)} "
                        "(one per header column)")
      continue
    frame = _int(fields[frame_col])
    if frame is None or frame < 0:
      problems.bad_line(path, line_no, f"frame number {fields[frame_col]!r} is not a "
                        "non-negative integer")
      continue
    if frame > MAX_FRAME:
      problems.bad_line(path, line_no, f"frame number {frame} is out of range; expected at "
                        f"most {MAX_FRAME}")
      continue
    if frame in rows:
      problems.bad_line(path, line_no, f"frame {frame} appears twice; expected one row per "
                        "frame")
      continue
    if previous is not None and frame < previous:
      problems.bad_line(path, line_no, f"frame {frame} after frame {previous}; expected "
                        "increasing frame numbers (a cut or reordered file?)")
      continue
    values, reason = _parse_values([fields[c] for c in au_cols],
                                   (*BP4D_VALUES, BP4D_UNKNOWN), columns)
    bad = [c for c in other_cols if _int(fields[c]) is None]
    if not reason and bad:
      reason = (f"AU{numbers[bad[0]]} (field {bad[0] + 1}) is {fields[bad[0]]!r}, not an "
                "integer; expected an integer in every column")
    if reason:
      problems.bad_line(path, line_no, reason)
      continue
    rows[frame] = [NOT_ANNOTATED if v == BP4D_UNKNOWN else v for v in values]
    previous = frame
  return _table(rows, len(au_numbers))


def bp4d_video(path: os.PathLike | str) -> tuple[str, str]:
  """``.../F001_T1.csv`` -> (subject ``F001``, task ``T1``)."""
  match = re.fullmatch(r"([^_]+)_([^_]+)\.csv", pathlib.Path(path).name)
  if not match:
    raise DatasetFormatError(f"{path}: file name is not <subject>_<task>.csv (e.g. F001_T1.csv)")
  return match.group(1), match.group(2)


# ---------------------------------------------------------------------------------------------
# DISFA.


def parse_disfa_intensities(lines: Sequence[str], path: os.PathLike | str,
                            problems: Problems) -> dict[int, int]:
  """Parses one ``ActionUnit_Labels/<SN>/<SN>_au<n>.txt``: lines ``frame,intensity``.

  Frames are 1-based integers, intensities integers 0-5; a frame listed twice is an error.

  Returns:
    {frame: intensity}.

  Raises:
    DatasetFormatError: empty file (always); a bad or duplicate line (unless skip_bad).
  """
  if not lines:
    raise DatasetFormatError(f"{path}: empty label file; expected lines 'frame,intensity'")
  intensities = {}
  allowed = range(DISFA_MIN_INTENSITY, DISFA_MAX_INTENSITY + 1)
  for line_no, line in enumerate(lines, start=1):
    fields = _fields(line)
    if len(fields) != len(DISFA_FIELDS):
      problems.bad_line(path, line_no, f"{len(fields)} fields; expected {len(DISFA_FIELDS)} "
                        f"({','.join(DISFA_FIELDS)!r})")
      continue
    frame, intensity = _int(fields[0]), _int(fields[1])
    if frame is None or frame < FIRST_FRAME:
      problems.bad_line(path, line_no, f"frame {fields[0]!r} is not an integer >= "
                        f"{FIRST_FRAME}; expected 'frame,intensity'")
      continue
    if frame > MAX_FRAME:
      problems.bad_line(path, line_no, f"frame {frame} is out of range; expected at most "
                        f"{MAX_FRAME}")
      continue
    if intensity is None:
      problems.bad_line(path, line_no, f"intensity {fields[1]!r} is not an integer; "
                        f"expected {DISFA_MIN_INTENSITY}-{DISFA_MAX_INTENSITY}")
      continue
    if intensity not in allowed:
      problems.bad_line(path, line_no, f"intensity {intensity} is out of range; expected "
                        f"{DISFA_MIN_INTENSITY}-{DISFA_MAX_INTENSITY}")
      continue
    if frame in intensities:
      problems.bad_line(path, line_no, f"frame {frame} appears twice; expected one line per "
                        "frame")
      continue
    intensities[frame] = intensity
  return intensities


def disfa_table(intensities: Sequence[Mapping[int, int]]) -> LabelTable:
  """Per-AU {frame: intensity} (aus.DISFA order) -> occurrence labels.

  An AU is present (1) iff its intensity is >= DISFA_PRESENT_INTENSITY, else 0; a frame that
  one AU file does not list is -1 for that AU. Frames are the union over all files.
  """
  frames = sorted(set().union(*intensities))
  rows = {
      f: [NOT_ANNOTATED if f not in per_au else int(per_au[f] >= DISFA_PRESENT_INTENSITY)
          for per_au in intensities]
      for f in frames
  }
  return _table(rows, len(intensities))


# ---------------------------------------------------------------------------------------------
# Folds.


def fold_of(subject: str, folds: Mapping[str, Sequence[str]], source: os.PathLike | str) -> str:
  """The fold (split name) of a subject; a subject in no fold is a DatasetFormatError."""
  for name, subjects in folds.items():
    if subject in subjects:
      return name
  raise DatasetFormatError(
      f"{source}: subject {subject!r} is in no fold; expected one of the subjects of "
      f"{', '.join(folds)}")


# ---------------------------------------------------------------------------------------------
# Frame folders and images.


def index_frames(names: Iterable[str], folder: os.PathLike | str) -> dict[int, pathlib.Path]:
  """Maps frame numbers to the image files of one folder, whatever their zero-padding.

  The number is read from each file name (``0001.jpg``, ``001.jpg``, ``1.png``, ``01234.jpg``
  all parse), so the padding a copy of a dataset uses is detected per file, never assumed.
  Files that are not ``<ASCII digits>.{jpg,jpeg,png}`` are ignored (thumbnails, .DS_Store,
  ...).

  Args:
    names: the file names in the folder.
    folder: the folder.

  Returns:
    {number written in the file name: path}.

  Raises:
    DatasetFormatError: two files carry the same number (e.g. ``1.jpg`` and ``0001.jpg``).
  """
  folder = pathlib.Path(folder)
  index = {}
  for name in sorted(names):
    stem, suffix = os.path.splitext(name)
    if suffix.lower() not in IMAGE_SUFFIXES or not re.fullmatch(r"[0-9]+", stem):
      continue
    number = int(stem)
    if number in index:
      raise DatasetFormatError(
          f"{folder}: files {index[number].name!r} and {name!r} are both frame {number}; "
          "expected one image per frame")
    index[number] = folder / name
  return index


def list_frames(folder: os.PathLike | str) -> dict[int, pathlib.Path]:
  """``index_frames`` of a folder on disk; {} if the folder does not exist."""
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    return {}
  return index_frames(os.listdir(folder), folder)


def shift_to_one_based(index: Mapping[int, pathlib.Path]) -> dict[int, pathlib.Path]:
  """Re-keys a frame folder by 1-based frame number if its files count from 0.

  DISFA frames are commonly extracted 0-based (``0.png`` is label frame 1): a folder holding a
  file numbered 0 is 0-based, any other is taken as 1-based.
  """
  if 0 not in index:
    return dict(index)
  return {number + FIRST_FRAME: path for number, path in index.items()}


def read_image(path: os.PathLike | str, problems: Problems) -> bytes | None:
  """The encoded bytes of a JPEG/PNG frame after checking that it fully decodes.

  Returns:
    The file's bytes, unchanged; None if it is unreadable and ``problems.skip_bad``.

  Raises:
    DatasetFormatError: an empty, non-image or truncated file (unless skip_bad).
  """
  expected = f"expected a complete {' or '.join(IMAGE_FORMATS)} image"
  try:
    data = pathlib.Path(path).read_bytes()
  except OSError as e:
    problems.bad_image(path, f"cannot read the file ({e.strerror}); {expected}")
    return None
  if not data:
    problems.bad_image(path, f"empty file (0 bytes); {expected}")
    return None
  try:
    with Image.open(io.BytesIO(data)) as image:
      if image.format not in IMAGE_FORMATS:
        problems.bad_image(path, f"a {image.format} image; {expected}")
        return None
      image.verify()  # PNG: chunk CRCs and the end marker.
    with Image.open(io.BytesIO(data)) as image:
      if image.format == "JPEG":
        image.draft(image.mode, (max(1, image.width // JPEG_DRAFT_SCALE),
                                 max(1, image.height // JPEG_DRAFT_SCALE)))
      image.load()  # decodes every byte: a truncated file fails here.
  except (OSError, SyntaxError, ValueError) as e:
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    problems.bad_image(path, f"unreadable image ({reason}); {expected}")
    return None
  return data


def label_paths(folder: os.PathLike | str, pattern: str) -> list[pathlib.Path]:
  """The label files of a folder matching ``pattern``, sorted; hidden files (``._x.txt``
  left by macOS archivers) are not label files."""
  return sorted(p for p in pathlib.Path(folder).glob(pattern) if not p.name.startswith("."))


# ---------------------------------------------------------------------------------------------
# Examples and summaries.


@dataclasses.dataclass(frozen=True)
class Video:
  """One labelled video and its frame files.

  Attributes:
    name: the ``video`` feature (Aff-Wild2 file stem, BP4D ``F001_T1``, DISFA ``SN001``).
    subject: the ``subject`` feature.
    labels: its LabelTable.
    images: {1-based frame number: image file}.
  """
  name: str
  subject: str
  labels: LabelTable
  images: Mapping[int, pathlib.Path]


def require_images(videos: Sequence[Video], images_dir: os.PathLike | str,
                   expected: str) -> None:
  """Raises if not one of ``videos`` has a frame file: the image folder is misplaced.

  (Single missing frames are normal and counted; a split with none means a wrong layout.)
  """
  if videos and not any(video.images for video in videos):
    raise DatasetFormatError(
        f"{images_dir}: no frame images found for any of {len(videos)} labelled videos; "
        f"expected {expected}")


@dataclasses.dataclass
class SplitStats:
  """What a split's build wrote and skipped; filled by ``generate_examples``."""
  problems: Problems
  videos: set[str] = dataclasses.field(default_factory=set)
  subjects: set[str] = dataclasses.field(default_factory=set)
  frames_written: int = 0
  unannotated_frames: int = 0  # written frames whose labels are all -1
  missing_images: list[str] = dataclasses.field(default_factory=list)
  positives: np.ndarray | None = None  # int64 [L]
  annotated: np.ndarray | None = None  # int64 [L]

  def count(self, labels: np.ndarray) -> None:
    """Adds one written frame's labels [L] to the per-AU counts."""
    if self.positives is None:
      self.positives = np.zeros(labels.shape, np.int64)
      self.annotated = np.zeros(labels.shape, np.int64)
    self.frames_written += 1
    valid = labels != NOT_ANNOTATED
    self.unannotated_frames += int(not valid.any())
    self.annotated += valid
    self.positives += labels == 1


def generate_examples(videos: Sequence[Video],
                      stats: SplitStats) -> Iterator[tuple[str, dict[str, object]]]:
  """Yields ``(key, example)`` for every annotated frame that has a readable image.

  A frame without an image file is skipped and recorded in ``stats.missing_images``; an
  unreadable image goes to ``stats.problems``.

  Yields:
    key ``"<video>/<frame>"``; example {image: bytes, labels: int8 [L], video: str,
    frame: int (1-based), subject: str}.
  """
  for video in videos:
    for frame, labels in zip(video.labels.frames.tolist(), video.labels.labels):
      path = video.images.get(frame)
      if path is None:
        stats.missing_images.append(f"{video.name} frame {frame}")
        continue
      image = read_image(path, stats.problems)
      if image is None:
        continue
      stats.videos.add(video.name)
      stats.subjects.add(video.subject)
      stats.count(labels)
      yield f"{video.name}/{frame}", {
          "image": image,
          "labels": labels,
          "video": video.name,
          "frame": frame,
          "subject": video.subject,
      }


def summary(dataset: str, au_names: Sequence[str], stats: Mapping[str, SplitStats],
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
        "frames_skipped_missing_image": len(s.missing_images),
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


def format_summary(report: Mapping[str, object]) -> str:
  """The human-readable form of ``summary``'s report."""
  lines = [f"{report['dataset']} build summary (skip_bad={report['skip_bad']}):"]
  for split, s in report["splits"].items():
    lines.append(
        f"  {split}: {s['videos']} videos, {s['subjects']} subjects, {s['frames_written']} "
        f"frames written ({s['unannotated_frames_kept']} with no AU annotated), "
        f"{s['frames_skipped_missing_image']} skipped for a missing image, "
        f"{s['bad_lines_skipped']} bad lines and {s['bad_images_skipped']} bad images skipped")
    rates = " ".join(f"{name}={'n/a' if r is None else f'{r:.3f}'}"
                     for name, r in s["positive_rate"].items())
    lines.append(f"    positive rate: {rates}")
    for key, title in (("first_missing_images", "no image"), ("first_bad_lines", "bad line"),
                       ("first_bad_images", "bad image")):
      for where in s[key]:
        lines.append(f"    {title}: {where}")
  return "\n".join(lines)


def write_summary(directory: os.PathLike | str, report: Mapping[str, object]) -> pathlib.Path:
  """Writes the report as ``<directory>/summary.json``; returns the path."""
  path = pathlib.Path(directory) / SUMMARY_FILENAME
  path.write_text(json.dumps(report, indent=2) + "\n")
  return path
