"""Bad input, fuzzed: the three dataset layouts and the config.

Datasets. Each case writes a valid tiny manual dir (``dataset_fixtures``), corrupts it with one
or a few seeded random mutations, and reads it through the builder's own code: its
``_split_generators`` and example generator (everything but the TFDS writer), and for a subset
a real TFDS build read back with ``as_dataset``. THE PROPERTY: every case ends either

  * built correctly: every split holds exactly the frames the mutated fixture intends, with
    their labels, subjects and pixels, frame by frame; or
  * refused: a ``DatasetFormatError`` whose one-line message starts with the file (and
    ``:<line>:`` for a label line) of one of the corruptions.

No other exception may escape, and no wrong label may be written (a value ``1.5`` never
becomes 1, a cut last line never becomes a shorter video with a partial row).

Accepted (the decisions made explicit here, ``KINDS`` says which outcome each kind must have):
a UTF-8 BOM; LF, CRLF or CR line ends; spaces, tabs and other Unicode spaces around fields,
headers included; blank lines at the end; a file cut exactly at a line end (a shorter file:
its lost frames are gone in Aff-Wild2 and BP4D, -1 for that AU in DISFA); BP4D columns in any
order, extra or missing non-standard AU columns, 9 (unknown, -> -1), any integer in a column
that is not one of the 12 AUs; DISFA lines in any order; a PNG named .jpg (or a JPEG named .png):
the content is checked, not the suffix; a missing image (skipped and counted); image names in
non-ASCII digits (ignored: not frame files); Unicode and spaces in Aff-Wild2 video names, also
when the label file and the frame folder spell the name in different Unicode normal forms.

Refused: any cut inside a line; an empty or header-only file; non-UTF-8 text; wrong field
counts; a blank line mid-file; an Aff-Wild2 header reordered, missing or extra names,
lowercase; a BP4D header that is not integers, repeats or lacks an AU; values outside the
format's set (2, -2, 9 in Aff-Wild2, 6 in DISFA, 1.5, nan, empty, +1, full-width digits, ...);
a non-integer in any BP4D column; BP4D rows whose frames do not increase; a frame listed twice;
a frame number out of int32 range; an empty, non-image, truncated or GIF image; two image
files for one frame (``00001.jpg`` and ``1.jpg``).

Known limit (not fuzzed): a 0-based DISFA frame folder whose ``0.png`` is missing looks
1-based, so its frames would be read one off; the first file of a 0-based folder is never
deleted here.

Config. Overrides of the wrong type through the CLI, unknown fields, contradictory settings
and seeded random mutations of every numeric field: each is refused naming its field, and
``validate`` never raises anything but ``ConfigError``.

Run with ``-s`` (or ``-rP``) to see the summary tables.
"""

import collections
import dataclasses
import io
import math
import pathlib
import subprocess
import sys
import types
import unicodedata
from typing import Callable

import ml_collections
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

import dataset_fixtures as fixtures
from configs import abaw3
from configs import tiny
from mlt_flax import aus
from mlt_flax import configuration
from mlt_flax.data import build
from mlt_flax.data.label_files import DatasetFormatError

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUILDERS = build.BUILDERS
WRITERS = {"abaw3_au": fixtures.write_affwild2, "bp4d": fixtures.write_bp4d,
           "disfa": fixtures.write_disfa}
SEEDS = {"abaw3_au": 1000, "bp4d": 2000, "disfa": 3000}
# Cases per dataset through the builder's generators (about 10 ms each): every kind alone
# REPEATS times (other positions and values), then combinations of 2-3 kinds on different
# videos, half of them of kinds that must build.
CASES_PER_DATASET = 250
REPEATS = 3
MAX_KINDS_PER_CASE = 3
# JPEG re-quantises a flat colour by a few levels.
COLOR_TOLERANCE = 4
# A cut image keeps at least 1 byte and loses at least this many: losing only the last bytes
# (JPEG's end marker, PNG's IEND checksum) may leave every pixel decodable.
MIN_IMAGE_CUT = 5

REFUSED, BUILT = "refused", "built"
# Values no format allows (Aff-Wild2 and BP4D add their own out-of-range numbers).
BAD_VALUES = ("1.5", "nan", "", "x", "+1", "1e0", "0x1", "\uff11", "--1", "1 0", "True", "-")
AFFWILD2_BAD_VALUES = ("2", "-2", "9", *BAD_VALUES)
BP4D_BAD_VALUES = ("2", "-1", "-2", "7", *BAD_VALUES)
DISFA_BAD_INTENSITIES = ("6", "-1", "9", *BAD_VALUES)
BAD_FRAMES = ("x", "-1", "1.5", "", "1e3", "99999999999")  # the last is beyond int32
# Characters str.strip() removes: spaces around a field, like " ".
SPACES = (" ", "  ", "\t", "\x0c", "\x85", "\u00a0", "\u2028", "\u3000")
# Unicode and spaces in Aff-Wild2 video names (files and folders).
VIDEO_NAMES = ("vidéo 1_left", "vidéo 1_right", "видео 2", "视频 3", "two  spaces_left",
               " leading space", "Zoë-30-640x480", "emoji \U0001F600")


# ---------------------------------------------------------------------------------------------
# What a fixture holds, file by file.


@dataclasses.dataclass
class LabelFile:
  """One label file of a fixture and which frames its lines hold."""
  path: pathlib.Path
  split: str
  video: str
  header: bool  # line 1 is a header
  frame_of_line: Callable[[int], int]  # 1-based file line -> frame
  au: int | None = None  # DISFA: the AU index (in aus.DISFA) the file codes


@dataclasses.dataclass
class ImageFile:
  path: pathlib.Path
  split: str
  key: tuple[str, int]  # (video, frame)
  side: int


@dataclasses.dataclass
class Unit:
  """A video (DISFA: a subject): its label files, frame folder and image files. A case mutates
  a unit at most once, so that its corruptions cannot hide each other."""
  name: str
  labels: list[LabelFile]
  folder: pathlib.Path
  images: list[ImageFile]


def _affwild2_units(fixture):
  root = fixture.manual_dir
  units = []
  for folder, videos in fixtures.AFFWILD2_VIDEOS.items():
    split = fixtures.AFFWILD2_SPLITS[folder]
    for video, _ in videos:
      path = root / "Third ABAW Annotations" / "AU_Detection_Challenge" / folder / f"{video}.txt"
      images = [ImageFile(root / "cropped_aligned" / video / f"{frame:05d}.jpg", split,
                          (video, frame), fixtures.AFFWILD2_SIDE)
                for (v, frame) in fixture.examples[split] if v == video]
      units.append(Unit(video, [LabelFile(path, split, video, True, lambda j: j - 1)],
                        root / "cropped_aligned" / video, images))
  return units


def _bp4d_units(fixture):
  root = fixture.manual_dir
  units = []
  for subject, task, start, _, digits, suffix, split in fixtures.BP4D_VIDEOS:
    video = f"{subject}_{task}"
    folder = root / "2DFaces" / subject / task
    label = LabelFile(root / "AUCoding" / "AU_OCC" / f"{video}.csv", split, video, True,
                      lambda j, start=start: start + j - 2)
    images = [ImageFile(folder / f"{frame:0{digits}d}{suffix}", split, (video, frame),
                        fixtures.SMALL_SIDE)
              for (v, frame) in fixture.examples[split] if v == video]
    units.append(Unit(video, [label], folder, images))
  return units


def _disfa_units(fixture):
  root = fixture.manual_dir
  units = []
  for subject, _, first_file, suffix, split in fixtures.DISFA_SUBJECTS:
    labels = [LabelFile(root / "ActionUnit_Labels" / subject / f"{subject}_au{au}.txt", split,
                        subject, False, lambda j: j, au=a) for a, au in enumerate(aus.DISFA)]
    folder = root / "Images" / subject
    images = [ImageFile(folder / f"{frame - 1 + first_file}{suffix}", split, (subject, frame),
                        fixtures.SMALL_SIDE)
              for (v, frame) in fixture.examples[split] if v == subject]
    units.append(Unit(subject, labels, folder, images))
  return units


UNITS = {"abaw3_au": _affwild2_units, "bp4d": _bp4d_units, "disfa": _disfa_units}


@dataclasses.dataclass
class Case:
  """A fixture being corrupted, and what reading it must give."""
  dataset: str
  fixture: fixtures.Fixture
  rng: np.random.Generator
  units: list[Unit]
  used: set[str] = dataclasses.field(default_factory=set)
  # Where a refusal may point: (file or folder, line or None). Empty: it must build.
  refusals: list[tuple[pathlib.Path, int | None]] = dataclasses.field(default_factory=list)

  def unit(self) -> Unit:
    free = [u for u in self.units if u.name not in self.used]
    unit = free[self.rng.integers(len(free))]
    self.used.add(unit.name)
    return unit

  def label_file(self) -> LabelFile:
    labels = self.unit().labels
    return labels[self.rng.integers(len(labels))]

  def image(self, first_ok: bool = True) -> ImageFile:
    """A random image of a random unit; ``first_ok=False`` spares file 0 of a 0-based folder."""
    images = self.unit().images
    if not first_ok:
      images = [i for i in images if i.path.stem != "0"]
    return images[self.rng.integers(len(images))]

  def choice(self, options):
    return options[self.rng.integers(len(options))]

  def refuse(self, path, line=None):
    self.refusals.append((path, line))

  def relabel(self, label: LabelFile, frame: int, au: int | None, value: int | None) -> None:
    """The intended example of ``frame``: gone (au None), or AU ``au`` set to ``value``."""
    examples = self.fixture.examples[label.split]
    key = (label.video, frame)
    if key not in examples:
      return  # no image: never an example
    if au is None:
      del examples[key]
    else:
      labels = list(examples[key].labels)
      labels[au] = value
      examples[key] = dataclasses.replace(examples[key], labels=tuple(labels))

  def lose_lines_after(self, label: LabelFile, kept: int, total: int) -> None:
    """Lines kept+1..total are gone: their frames too (a DISFA AU file: that AU is -1)."""
    for line in range(kept + 1, total + 1):
      self.relabel(label, label.frame_of_line(line), label.au,
                   None if label.au is None else -1)


# ---------------------------------------------------------------------------------------------
# Mutations. Each corrupts one unit of the case and either updates what the build must give
# or records where the refusal must point.


def _read(path):
  """The lines of a fixture file (written with "\\n" ends and a final "\\n")."""
  return path.read_text(encoding="utf-8").split("\n")[:-1]


def _write(path, lines, end="\n", final=True):
  path.write_bytes((end.join(lines) + (end if final else "")).encode("utf-8"))


def _data_line(case, label, lines):
  """A random 1-based line number holding data."""
  first = 2 if label.header else 1
  return int(case.rng.integers(first, len(lines) + 1))


def cut_mid_line(case):
  label = case.label_file()
  lines = _read(label.path)
  # Half the time the last line (a download that stopped), else any data line (mid-file).
  j = len(lines) if case.rng.random() < 0.5 else _data_line(case, label, lines)
  cut = int(case.rng.integers(1, len(lines[j - 1])))
  _write(label.path, lines[:j - 1] + [lines[j - 1][:cut]], final=False)
  case.refuse(label.path, j)


def cut_mid_header(case):
  label = case.label_file()
  lines = _read(label.path)
  cut = int(case.rng.integers(1, len(lines[0])))
  _write(label.path, [lines[0][:cut]], final=False)
  case.refuse(label.path, 1)


def cut_at_line_end(case):
  label = case.label_file()
  lines = _read(label.path)
  first = 2 if label.header else 1
  kept = int(case.rng.integers(first, len(lines)))  # at least one data line kept and one lost
  _write(label.path, lines[:kept], final=bool(case.rng.integers(2)))
  case.lose_lines_after(label, kept, len(lines))


def cut_to_header(case):
  label = case.label_file()
  _write(label.path, _read(label.path)[:1], final=bool(case.rng.integers(2)))
  case.refuse(label.path)


def empty_file(case):
  label = case.label_file()
  label.path.write_bytes(case.choice([b"", b"\n", b"  \r\n\n"]))
  case.refuse(label.path)


def not_utf8(case):
  label = case.label_file()
  data = bytearray(label.path.read_bytes())
  data.insert(int(case.rng.integers(len(data))), case.choice([0xff, 0xe9, 0x80]))
  label.path.write_bytes(bytes(data))
  case.refuse(label.path)


def extra_field(case):
  label = case.label_file()
  lines = _read(label.path)
  j = _data_line(case, label, lines)
  lines[j - 1] += case.choice([",0", ",", ",1,1"])
  _write(label.path, lines)
  case.refuse(label.path, j)


def missing_field(case):
  label = case.label_file()
  lines = _read(label.path)
  j = _data_line(case, label, lines)
  lines[j - 1] = lines[j - 1].rsplit(",", 1)[0]
  _write(label.path, lines)
  case.refuse(label.path, j)


def blank_line_mid(case):
  label = case.label_file()
  lines = _read(label.path)
  j = _data_line(case, label, lines)  # the blank line becomes line j; the data moves down
  lines.insert(j - 1, case.choice(["", " ", "\t"]))
  _write(label.path, lines)
  case.refuse(label.path, j)


def blank_lines_at_end(case):
  label = case.label_file()
  _write(label.path, _read(label.path) + ["", case.choice(["", " ", "\t"]), ""])


def bom(case):
  label = case.label_file()
  label.path.write_bytes(b"\xef\xbb\xbf" + label.path.read_bytes())


def crlf(case):
  label = case.label_file()
  _write(label.path, _read(label.path), end="\r\n", final=bool(case.rng.integers(2)))


def cr_only(case):
  label = case.label_file()
  _write(label.path, _read(label.path), end="\r")


def spaces_around_fields(case):
  """Unicode spaces before/after random fields of random lines, headers included."""
  label = case.label_file()
  lines = _read(label.path)
  for j in range(len(lines)):
    if case.rng.random() < 0.5:
      fields = lines[j].split(",")
      k = int(case.rng.integers(len(fields)))
      space = case.choice(SPACES)
      fields[k] = space + fields[k] if case.rng.integers(2) else fields[k] + space
      lines[j] = ",".join(fields)
  _write(label.path, lines)


def _set_field(case, label, line, field, value):
  lines = _read(label.path)
  fields = lines[line - 1].split(",")
  fields[field] = value
  lines[line - 1] = ",".join(fields)
  _write(label.path, lines)


def affwild2_bad_value(case):
  label = case.label_file()
  j = _data_line(case, label, _read(label.path))
  _set_field(case, label, j, int(case.rng.integers(len(aus.AFFWILD2))),
             case.choice(AFFWILD2_BAD_VALUES))
  case.refuse(label.path, j)


def _affwild2_header(case, change):
  label = case.label_file()
  lines = _read(label.path)
  lines[0] = change(list(aus.names(aus.AFFWILD2)))
  assert lines[0] != ",".join(aus.names(aus.AFFWILD2))
  _write(label.path, lines)
  case.refuse(label.path, 1)


def affwild2_header_reordered(case):
  i, k = case.rng.choice(len(aus.AFFWILD2), size=2, replace=False)

  def swap(names):
    names[i], names[k] = names[k], names[i]
    return ",".join(names)
  _affwild2_header(case, swap)


def affwild2_header_missing(case):
  i = int(case.rng.integers(len(aus.AFFWILD2)))
  _affwild2_header(case, lambda names: ",".join(names[:i] + names[i + 1:]))


def affwild2_header_extra(case):
  _affwild2_header(case, lambda names: ",".join(names + [case.choice(["AU27", "AU5", ""])]))


def affwild2_header_lowercase(case):
  _affwild2_header(case, lambda names: ",".join(names).lower())


def _bp4d_column(au):
  return fixtures.BP4D_HEADER.index(au)


def _bp4d_frame_au(case):
  """A random (label file, data line, AU index in aus.BP4D)."""
  label = case.label_file()
  return label, _data_line(case, label, _read(label.path)), int(case.rng.integers(len(aus.BP4D)))


def bp4d_bad_value(case):
  label, j, a = _bp4d_frame_au(case)
  _set_field(case, label, j, _bp4d_column(aus.BP4D[a]), case.choice(BP4D_BAD_VALUES))
  case.refuse(label.path, j)


def bp4d_unknown_9(case):
  label, j, a = _bp4d_frame_au(case)
  _set_field(case, label, j, _bp4d_column(aus.BP4D[a]), "9")
  case.relabel(label, label.frame_of_line(j), a, -1)


OTHER_BP4D_COLUMNS = [c for c, n in enumerate(fixtures.BP4D_HEADER)
                      if n != 0 and n not in aus.BP4D]


def bp4d_other_column_not_integer(case):
  label = case.label_file()
  j = _data_line(case, label, _read(label.path))
  _set_field(case, label, j, case.choice(OTHER_BP4D_COLUMNS), case.choice(BAD_VALUES))
  case.refuse(label.path, j)


def bp4d_other_column_any_integer(case):
  label = case.label_file()
  j = _data_line(case, label, _read(label.path))
  _set_field(case, label, j, case.choice(OTHER_BP4D_COLUMNS), case.choice(["7", "-1", "2"]))


def bp4d_bad_frame(case):
  label = case.label_file()
  j = _data_line(case, label, _read(label.path))
  _set_field(case, label, j, 0, case.choice(BAD_FRAMES))
  case.refuse(label.path, j)


def _bp4d_columns(case, change):
  """Rewrites every row of a file by ``change(fields) -> fields`` (header included)."""
  label = case.label_file()
  lines = [",".join(change(line.split(","))) for line in _read(label.path)]
  _write(label.path, lines)
  return label


def bp4d_columns_permuted(case):
  order = case.rng.permutation(len(fixtures.BP4D_HEADER))
  _bp4d_columns(case, lambda fields: [fields[i] for i in order])


def bp4d_other_column_dropped(case):
  c = case.choice(OTHER_BP4D_COLUMNS)
  _bp4d_columns(case, lambda fields: fields[:c] + fields[c + 1:])


def bp4d_column_added(case):
  values = iter(case.rng.choice(["0", "1", "9"], size=100))
  header = [True]

  def add(fields):
    first, header[0] = header[0], False
    return fields + ["43" if first else next(values)]
  _bp4d_columns(case, add)


def bp4d_au_column_dropped(case):
  c = _bp4d_column(case.choice(aus.BP4D))
  label = _bp4d_columns(case, lambda fields: fields[:c] + fields[c + 1:])
  case.refuse(label.path, 1)


def bp4d_header_not_integer(case):
  label = case.label_file()
  _set_field(case, label, 1, int(case.rng.integers(len(fixtures.BP4D_HEADER))),
             case.choice(["AU1", "1.0", "", "x", "frame"]))
  case.refuse(label.path, 1)


def bp4d_header_repeats(case):
  label = case.label_file()
  _set_field(case, label, 1, case.choice(OTHER_BP4D_COLUMNS), str(case.choice(aus.BP4D)))
  case.refuse(label.path, 1)


def duplicate_frame(case):
  """A data line again later in the file (BP4D: a row; DISFA: maybe another intensity)."""
  label = case.label_file()
  lines = _read(label.path)
  j = _data_line(case, label, lines)
  copy = lines[j - 1]
  if label.au is not None and case.rng.integers(2):
    copy = copy.split(",")[0] + "," + str(case.rng.integers(0, 6))
  at = int(case.rng.integers(j, len(lines) + 1))  # 0-based insert index, after line j
  lines.insert(at, copy)
  _write(label.path, lines)
  case.refuse(label.path, at + 1)


def bp4d_rows_swapped(case):
  label = case.label_file()
  lines = _read(label.path)
  j = int(case.rng.integers(2, len(lines)))  # swap lines j and j + 1
  lines[j - 1], lines[j] = lines[j], lines[j - 1]
  _write(label.path, lines)
  case.refuse(label.path, j + 1)


def disfa_lines_swapped(case):
  label = case.label_file()
  lines = _read(label.path)
  j = int(case.rng.integers(1, len(lines)))
  lines[j - 1], lines[j] = lines[j], lines[j - 1]
  _write(label.path, lines)


def disfa_bad_intensity(case):
  label = case.label_file()
  j = _data_line(case, label, _read(label.path))
  _set_field(case, label, j, 1, case.choice(DISFA_BAD_INTENSITIES))
  case.refuse(label.path, j)


def disfa_bad_frame(case):
  label = case.label_file()
  j = _data_line(case, label, _read(label.path))
  _set_field(case, label, j, 0, case.choice(("0", *BAD_FRAMES)))
  case.refuse(label.path, j)


def disfa_header_line(case):
  label = case.label_file()
  _write(label.path, [case.choice(["frame,intensity", "Frame,AU1"])] + _read(label.path))
  case.refuse(label.path, 1)


def disfa_au_file_missing(case):
  label = case.label_file()
  label.path.unlink()
  case.refuse(label.path)


def missing_image(case):
  image = case.image(first_ok=False)
  image.path.unlink()
  del case.fixture.examples[image.split][image.key]


def _bad_image(case, data):
  image = case.image()
  image.path.write_bytes(data(image))
  case.refuse(image.path)


def empty_image(case):
  _bad_image(case, lambda image: b"")


def not_image(case):
  _bad_image(case, lambda image: case.choice([b"this is not an image\n", b"\x00" * 64,
                                               b"\xff\xd8\xff\xe0 JFIF but no more"]))


def truncated_image(case):
  def cut(image):
    data = image.path.read_bytes()
    return data[:int(case.rng.integers(1, len(data) - MIN_IMAGE_CUT))]
  _bad_image(case, cut)


def gif_image(case):
  _bad_image(case, lambda image: fixtures.image_bytes((1, 2, 3), image.side, "GIF"))


def other_format_image(case):
  """PNG bytes in a .jpg (JPEG bytes in a .png): the same pixels, accepted."""
  image = case.image()
  color = case.fixture.examples[image.split][image.key].color
  fmt = "JPEG" if image.path.suffix == ".png" else "PNG"
  image.path.write_bytes(fixtures.image_bytes(color, image.side, fmt))


def duplicate_padding(case):
  """The same frame number at another zero-padding (``00001.jpg`` and ``1.jpg``)."""
  image = case.image()
  number = int(image.path.stem)
  names = {f"{number:0{digits}d}{image.path.suffix}" for digits in range(1, 7)}
  names |= {f"{image.path.stem}{s}" for s in (".jpg", ".png", ".JPG", ".jpeg")}
  names.discard(image.path.name)
  other = image.path.with_name(case.choice(sorted(names)))
  other.write_bytes(image.path.read_bytes())
  case.refuse(image.path.parent)


def non_ascii_digit_names(case):
  """``١.jpg`` (Arabic-Indic one), ``².jpg``: not frame files, ignored."""
  image = case.image()
  for name in case.rng.choice(["\u0661", "\u00b2", "\u06f3", "\uff11", "\u2460"], size=2,
                              replace=False):
    image.path.with_name(name + image.path.suffix).write_bytes(image.path.read_bytes())


def _rename_video(case, label_name, folder_name):
  """Renames an Aff-Wild2 video: its label file to ``label_name``, its folder to
  ``folder_name``; the build must name the video after the label file."""
  unit = case.unit()
  label = unit.labels[0]
  label.path.rename(label.path.with_name(label_name + ".txt"))
  unit.folder.rename(unit.folder.with_name(folder_name))
  examples = case.fixture.examples[label.split]
  for key in [k for k in examples if k[0] == unit.name]:
    subject = label_name.removesuffix("_left").removesuffix("_right")
    examples[(label_name, key[1])] = dataclasses.replace(examples.pop(key), subject=subject)


def unicode_video_name(case):
  name = case.choice(VIDEO_NAMES)
  _rename_video(case, name, name)


def unicode_forms_differ(case):
  """Label file NFC, folder NFD (an archive made on macOS), or the other way round."""
  name = case.choice([n for n in VIDEO_NAMES if not n.isascii()])
  forms = [unicodedata.normalize("NFC", name), unicodedata.normalize("NFD", name)]
  if case.rng.integers(2):
    forms.reverse()
  _rename_video(case, *forms)


ANY = ("abaw3_au", "bp4d", "disfa")
WITH_HEADER = ("abaw3_au", "bp4d")
# kind -> (mutation, outcome it must have alone, datasets it applies to).
KINDS = {
    "cut_mid_line": (cut_mid_line, REFUSED, ANY),
    "cut_mid_header": (cut_mid_header, REFUSED, WITH_HEADER),
    "cut_at_line_end": (cut_at_line_end, BUILT, ANY),
    "cut_to_header": (cut_to_header, REFUSED, WITH_HEADER),
    "empty_file": (empty_file, REFUSED, ANY),
    "not_utf8": (not_utf8, REFUSED, ANY),
    "extra_field": (extra_field, REFUSED, ANY),
    "missing_field": (missing_field, REFUSED, ANY),
    "blank_line_mid": (blank_line_mid, REFUSED, ANY),
    "blank_lines_at_end": (blank_lines_at_end, BUILT, ANY),
    "bom": (bom, BUILT, ANY),
    "crlf": (crlf, BUILT, ANY),
    "cr_only": (cr_only, BUILT, ANY),
    "spaces_around_fields": (spaces_around_fields, BUILT, ANY),
    "duplicate_frame": (duplicate_frame, REFUSED, ("bp4d", "disfa")),
    "bad_value": (affwild2_bad_value, REFUSED, ("abaw3_au",)),
    "header_reordered": (affwild2_header_reordered, REFUSED, ("abaw3_au",)),
    "header_missing": (affwild2_header_missing, REFUSED, ("abaw3_au",)),
    "header_extra": (affwild2_header_extra, REFUSED, ("abaw3_au",)),
    "header_lowercase": (affwild2_header_lowercase, REFUSED, ("abaw3_au",)),
    "bp4d_bad_value": (bp4d_bad_value, REFUSED, ("bp4d",)),
    "bp4d_unknown_9": (bp4d_unknown_9, BUILT, ("bp4d",)),
    "bp4d_other_column_not_integer": (bp4d_other_column_not_integer, REFUSED, ("bp4d",)),
    "bp4d_other_column_any_integer": (bp4d_other_column_any_integer, BUILT, ("bp4d",)),
    "bp4d_bad_frame": (bp4d_bad_frame, REFUSED, ("bp4d",)),
    "bp4d_columns_permuted": (bp4d_columns_permuted, BUILT, ("bp4d",)),
    "bp4d_other_column_dropped": (bp4d_other_column_dropped, BUILT, ("bp4d",)),
    "bp4d_column_added": (bp4d_column_added, BUILT, ("bp4d",)),
    "bp4d_au_column_dropped": (bp4d_au_column_dropped, REFUSED, ("bp4d",)),
    "bp4d_header_not_integer": (bp4d_header_not_integer, REFUSED, ("bp4d",)),
    "bp4d_header_repeats": (bp4d_header_repeats, REFUSED, ("bp4d",)),
    "bp4d_rows_swapped": (bp4d_rows_swapped, REFUSED, ("bp4d",)),
    "disfa_bad_intensity": (disfa_bad_intensity, REFUSED, ("disfa",)),
    "disfa_bad_frame": (disfa_bad_frame, REFUSED, ("disfa",)),
    "disfa_header_line": (disfa_header_line, REFUSED, ("disfa",)),
    "disfa_au_file_missing": (disfa_au_file_missing, REFUSED, ("disfa",)),
    "disfa_lines_swapped": (disfa_lines_swapped, BUILT, ("disfa",)),
    "missing_image": (missing_image, BUILT, ANY),
    "empty_image": (empty_image, REFUSED, ANY),
    "not_image": (not_image, REFUSED, ANY),
    "truncated_image": (truncated_image, REFUSED, ANY),
    "gif_image": (gif_image, REFUSED, ANY),
    "other_format_image": (other_format_image, BUILT, ANY),
    "duplicate_padding": (duplicate_padding, REFUSED, ANY),
    "non_ascii_digit_names": (non_ascii_digit_names, BUILT, ANY),
    "unicode_video_name": (unicode_video_name, BUILT, ("abaw3_au",)),
    "unicode_forms_differ": (unicode_forms_differ, BUILT, ("abaw3_au",)),
}
# Renames move a unit's files: only ever alone in a case.
ALONE = ("unicode_video_name", "unicode_forms_differ")


def kinds_of(dataset):
  return [k for k, (_, _, datasets) in KINDS.items() if dataset in datasets]


def case_plan(dataset):
  """[(seed, kinds)]: every kind alone REPEATS times, then random combinations."""
  kinds = kinds_of(dataset)
  plan = [(i, (k,)) for i, k in enumerate(kinds * REPEATS)]
  rng = np.random.default_rng(SEEDS[dataset])
  combinable = [k for k in kinds if k not in ALONE]
  building = [k for k in combinable if KINDS[k][1] == BUILT]
  for i in range(len(plan), CASES_PER_DATASET):
    size = int(rng.integers(2, MAX_KINDS_PER_CASE + 1))
    pool = building if i % 2 else combinable
    plan.append((i, tuple(rng.choice(pool, size=size, replace=False).tolist())))
  return plan


def make_case(dataset, seed, kinds, root):
  fixture = WRITERS[dataset](root)
  case = Case(dataset, fixture, np.random.default_rng([SEEDS[dataset], seed]),
              UNITS[dataset](fixture))
  for kind in kinds:
    KINDS[kind][0](case)
  return case


# ---------------------------------------------------------------------------------------------
# Reading a case back.


def _mean_color(image):
  return np.asarray(image).reshape(-1, 3).mean(axis=0)


def generate(dataset, manual_dir, data_dir):
  """The examples the builder would write, through its own _split_generators (no TFDS writer):
  {split: {(video, frame): (labels, subject, mean colour)}}."""
  builder = BUILDERS[dataset](data_dir=data_dir)
  generators = builder._split_generators(types.SimpleNamespace(manual_dir=manual_dir))  # pylint: disable=protected-access
  got = {}
  for split, examples in generators.items():
    got[split] = {}
    for _, ex in examples:
      key = (ex["video"], int(ex["frame"]))
      assert key not in got[split], f"{key} written twice"
      assert ex["labels"].dtype == np.int8
      if not ex["face"]:  # a labelled frame without a face crop (abaw3_au keeps them)
        continue
      with Image.open(io.BytesIO(ex["image"])) as image:
        color = _mean_color(image.convert("RGB"))
      got[split][key] = (tuple(ex["labels"].tolist()), ex["subject"], color)
  return got


def tfds_build(dataset, manual_dir, data_dir):
  """The same, through a real TFDS build read back with as_dataset."""
  builder = BUILDERS[dataset](data_dir=data_dir)
  try:
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  except DatasetFormatError:
    assert not BUILDERS[dataset](data_dir=data_dir).is_prepared()
    raise
  got = {}
  for split in builder.info.splits:
    got[split] = {}
    for ex in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
      key = (ex["video"].decode(), int(ex["frame"]))
      assert key not in got[split], f"{key} written twice"
      if not ex["face"]:  # a labelled frame without a face crop (abaw3_au keeps them)
        continue
      got[split][key] = (tuple(ex["labels"].tolist()), ex["subject"].decode(),
                         _mean_color(ex["image"]))
  return got


def run_case(case, read, data_dir):
  """Reads a case; checks THE PROPERTY; returns BUILT or REFUSED."""
  try:
    got = read(case.dataset, case.fixture.manual_dir, data_dir)
  except DatasetFormatError as e:
    message = str(e)
    assert "\n" not in message and "\r" not in message, message
    assert case.refusals, f"a valid input was refused: {message}"
    starts = [f"{path}:{line}: " if line else f"{path}: " for path, line in case.refusals]
    assert any(message.startswith(s) for s in starts), (message, starts)
    return REFUSED
  assert not case.refusals, f"built despite the corruptions at {case.refusals}"
  assert set(got) == set(case.fixture.examples)
  for split, expected in case.fixture.examples.items():
    assert sorted(got[split]) == sorted(expected), split
    for key, want in expected.items():
      labels, subject, color = got[split][key]
      assert labels == want.labels, (split, key, labels, want.labels)
      assert subject == want.subject, (split, key)
      np.testing.assert_allclose(color, want.color, atol=COLOR_TOLERANCE, err_msg=str(key))
  return BUILT


def _table(title, rows):
  """rows: [(kind, expected, Counter of outcomes)] -> a compact text table."""
  width = max(len(r[0]) for r in rows)
  lines = [title, f"  {'case kind':<{width}}  expected  built  refused"]
  for kind, expected, counts in rows:
    lines.append(f"  {kind:<{width}}  {expected:<8}  {counts[BUILT]:>5}  {counts[REFUSED]:>7}")
  return "\n".join(lines)


@pytest.mark.parametrize("dataset", ANY)
def test_fuzzed_dataset_is_built_right_or_refused_naming_file_and_line(tmp_path, dataset):
  singles = collections.defaultdict(collections.Counter)
  combos = collections.defaultdict(collections.Counter)
  for seed, kinds in case_plan(dataset):
    root = tmp_path / f"case{seed}"
    case = make_case(dataset, seed, kinds, root / "manual")
    expected = REFUSED if case.refusals else BUILT
    try:
      outcome = run_case(case, generate, root / "data")
    except Exception as e:
      raise AssertionError(f"{dataset} case {seed} {kinds}: {type(e).__name__}: {e}") from e
    if len(kinds) == 1:
      assert expected == KINDS[kinds[0]][1], (kinds, case.refusals)  # the test's own model
      singles[kinds[0]][outcome] += 1
    else:
      combos[expected][outcome] += 1
  rows = [(k, KINDS[k][1], singles[k]) for k in kinds_of(dataset)]
  rows += [(f"combined 2-{MAX_KINDS_PER_CASE} kinds", e, c) for e, c in sorted(combos.items())]
  print("\n" + _table(f"{dataset}: {CASES_PER_DATASET} fuzzed cases", rows))
  for kind, expected, counts in rows:
    assert set(counts) == {expected}, (kind, counts)
  # A mutation model that refused everything would prove nothing.
  assert combos[BUILT][BUILT] + sum(c[BUILT] for c in singles.values()) >= 10


# A few cases per dataset through a real TFDS build, read back frame by frame.
TFDS_CASES = [
    ("abaw3_au", ("unicode_video_name",)),
    ("abaw3_au", ("unicode_forms_differ",)),
    ("abaw3_au", ("other_format_image", "bom", "spaces_around_fields")),
    ("abaw3_au", ("cut_mid_line",)),
    ("bp4d", ("bp4d_columns_permuted", "other_format_image", "crlf")),
    ("bp4d", ("bp4d_unknown_9", "duplicate_padding")),
    ("disfa", ("cut_at_line_end", "other_format_image", "missing_image")),
    ("disfa", ("disfa_bad_intensity",)),
]


@pytest.mark.parametrize("dataset, kinds", TFDS_CASES)
def test_fuzzed_dataset_through_tfds(tmp_path, dataset, kinds):
  case = make_case(dataset, 10_000 + TFDS_CASES.index((dataset, kinds)), kinds,
                   tmp_path / "manual")
  outcome = run_case(case, tfds_build, tmp_path / "data")
  assert outcome == (REFUSED if case.refusals else BUILT)
  print(f"\n{dataset} {'+'.join(kinds)} through TFDS: {outcome}")


# ---------------------------------------------------------------------------------------------
# Config.


def run_main(tmp_path, *overrides):
  return subprocess.run(
      [sys.executable, "-m", "mlt_flax.main", "--config=configs/tiny.py",
       f"--workdir={tmp_path}", *overrides],
      cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # one subprocess of the entry point each
@pytest.mark.parametrize("override, field", [
    ("--config.model.d_model=abc", "config.model.d_model"),  # int field, not an int
    ("--config.model.d_model=1.5", "config.model.d_model"),
    ("--config.augment.mixup=maybe", "config.augment.mixup"),
    ("--config.data.weights=abc", "config.data.weights"),  # tuple field: ('abc',)
    ("--config.model.small_cnn_widths=(8,16)", "config.model.small_cnn_widths"),
])
def test_cli_override_of_the_wrong_type_names_the_field(tmp_path, override, field):
  r = run_main(tmp_path, override)
  assert r.returncode != 0
  assert field in r.stderr, r.stderr[-2000:]
  assert "Traceback" not in r.stderr, r.stderr[-2000:]


@pytest.mark.slow  # one subprocess of the entry point each
@pytest.mark.parametrize("override", ["--config.model.depth=3", "--config.nosuch.x=1"])
def test_cli_unknown_field_is_one_line(tmp_path, override):
  r = run_main(tmp_path, override)
  assert r.returncode != 0 and override.split("=")[0] in r.stderr
  assert "no such field" in r.stderr
  assert "Traceback" not in r.stderr, r.stderr[-2000:]


def test_config_types_and_fields_are_enforced_on_assignment():
  c = abaw3.get_config()
  with pytest.raises(TypeError, match="d_model"):
    c.model.d_model = "abc"
  c.lock()  # as main does (lock_config=True): no new fields
  with pytest.raises(AttributeError, match="depth"):
    c.model.depth = 3


def _set(config, field, value):
  *parents, name = field.split(".")
  for parent in parents:
    config = getattr(config, parent)
  setattr(config, name, value)


# (changes, the field the refusal must name): contradictions and out-of-range settings.
CONTRADICTIONS = [
    ({"data.label_space": "union17"}, "augment.mixup"),  # partial labels with mixup
    ({"data.datasets": ("abaw3_au", "bp4d"), "data.weights": (1.0, 1.0),
      "data.train_splits": ("train", "fold1")}, "augment.mixup"),  # bp4d lacks AU25, AU26
    ({"data.datasets": ("union17",)}, "data.datasets"),  # a label space, not a dataset
    ({"data.datasets": ()}, "data.datasets"),
    ({"data.weights": (1.0, 1.0)}, "data.weights"),  # length mismatch
    ({"data.weights": ("abc",)}, "data.weights"),
    ({"data.weights": (math.nan,)}, "data.weights"),
    ({"data.weights": (math.inf,)}, "data.weights"),
    ({"data.weights": (0.0,)}, "data.weights"),
    ({"data.train_splits": ("train", "validation")}, "data.train_splits"),
    ({"data.eval_dataset": "affwild2"}, "data.eval_dataset"),
    ({"data.eval_dataset": "union17"}, "data.eval_dataset"),
    ({"data.frame_stride": -5}, "data.frame_stride"),
    ({"data.frame_stride": 0}, "data.frame_stride"),
    ({"optim.frozen": ("head",)}, "optim.frozen"),
    ({"optim.frozen": ("backbone", "decoder")}, "optim.frozen"),
    ({"loss.bce": False, "loss.dice": False}, "loss.bce"),
    ({"loss.dice_weight": -0.5}, "loss.dice_weight"),
    ({"model.num_heads": 3}, "model.num_heads"),  # d_model 128 not a multiple
    ({"model.small_cnn_widths": (8, 16)}, "model.small_cnn_widths"),
    ({"model.small_cnn_widths": ("x", 1, 2)}, "model.small_cnn_widths"),
    ({"model.backbone": "small_cnn"}, "model.pretrained"),  # InceptionV3 weights
    ({"optim.warmup_epochs": 0.0}, "optim.warmup_epochs"),  # the schedule divides by it
    ({"optim.transformer_batch_tokens": 0.0}, "optim.transformer_batch_tokens"),
    ({"optim.backbone_lr": -1e-3}, "optim.backbone_lr"),
    ({"optim.b2": 1.0}, "optim.b2"),
    ({"eval.batch_size": 0}, "eval.batch_size"),
    ({"eval.threshold": 1.5}, "eval.threshold"),
    ({"eval.smoothing_windows": (5, 0)}, "eval.smoothing_windows"),
    ({"train.num_epochs": 0, "train.num_steps": 0}, "train.num_epochs"),
    ({"train.num_steps": -1}, "train.num_steps"),
    ({"train.on_nonfinite": "ignore"}, "train.on_nonfinite"),
]


@pytest.mark.parametrize("changes, field", CONTRADICTIONS)
def test_contradictory_settings_are_refused_naming_the_field(changes, field):
  c = abaw3.get_config()
  for name, value in changes.items():
    _set(c, name, value)
  with pytest.raises(configuration.ConfigError) as error:
    configuration.validate(c)
  message = str(error.value)
  assert "\n" not in message
  # A check across fields names one and states the others (d_model: model.num_heads=3).
  assert message.startswith(f"config.{field} = ") or f"{field}=" in message, message


def test_batch_not_divisible_by_the_device_count_names_train_batch_size():
  import jax  # pylint: disable=g-import-not-at-top
  from mlt_flax import runtime  # pylint: disable=g-import-not-at-top
  n = jax.device_count()
  assert n == 8  # conftest's fake CPU devices: a batch of n + 1 cannot be split
  dp = runtime.DataParallel()
  assert dp.local_batch_size(2 * n) == 2 * n // jax.process_count()
  with pytest.raises(configuration.ConfigError, match=rf"^config.train.batch_size = {n + 1}: "):
    dp.local_batch_size(n + 1)


def _leaves(config, prefix=""):
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      yield from _leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def _random_value(rng, value):
  """A random replacement of ``value``'s type: negative, zero, tiny, huge, non-finite."""
  if isinstance(value, bool):
    return not value
  if isinstance(value, int):
    return int(rng.choice([-1, 0, 1, 2, 3, -10**9, 10**9, 10**18, int(rng.integers(-100, 100))]))
  if isinstance(value, float):
    return float(rng.choice([-1.0, 0.0, 1e-12, 0.5, 0.999, 1.0, 1.5, 1e30, -1e30, math.nan,
                             math.inf, -math.inf, float(rng.normal())]))
  if isinstance(value, str):
    return str(rng.choice(["", " ", "x", "union17", "abaw3_au", "bp4d", "vidéo", value.upper()]))
  if isinstance(value, tuple):
    pool = [-1, 0, 1, 8, 2.5, math.nan, "", "x", "abaw3_au", "backbone", None, True]
    return tuple(pool[i] for i in rng.integers(len(pool), size=int(rng.integers(0, 4))))
  return value


def test_random_config_mutations_are_accepted_or_refused_naming_a_mutated_field():
  rng = np.random.default_rng(4242)
  fields = [f for f, v in _leaves(abaw3.get_config())
            if isinstance(v, (bool, int, float, str, tuple))]
  outcomes = collections.Counter()
  named = collections.Counter()
  for _ in range(400):
    c = abaw3.get_config()
    mutated = [str(f) for f in rng.choice(fields, size=int(rng.integers(1, 4)), replace=False)]
    for field in mutated:
      old = c
      for part in field.split("."):
        old = getattr(old, part)
      _set(c, field, _random_value(rng, old))  # same type: ml_collections takes it
    try:
      configuration.validate(c)
    except configuration.ConfigError as e:
      message = str(e)
      assert "\n" not in message
      # The refused field, or (a check across fields) one named in what is expected.
      assert any(f in message for f in mutated), (mutated, message)
      outcomes[REFUSED] += 1
      named[message.split(" = ")[0]] += 1
    else:  # any other exception fails the test with its trace
      outcomes[BUILT] += 1
  print(f"\nconfig fuzz: 400 mutated abaw3 configs, {outcomes[REFUSED]} refused, "
        f"{outcomes[BUILT]} accepted; fields named: {len(named)}")
  assert outcomes[REFUSED] > 100 and outcomes[BUILT] > 10
