"""Tiny copies of the licensed AU datasets in their exact on-disk layouts, for tests.

Each ``write_*`` function writes a manual directory (2-4 videos, a handful of frames, real
JPEG/PNG files) laid out as the dataset ships, with the quirks of the real data switched on by
default, and optionally ONE bad input (``bad=...``). It returns a ``Fixture`` holding what a
correct builder must produce, computed here independently of ``mlt_flax.data``:

* Aff-Wild2: ``<any>/AU_Detection_Challenge/{Train,Validation}_Set/<video>.txt`` and
  ``cropped_aligned/<video>/<frame:05d>.jpg``; quirks: ``_left``/``_right`` videos, an
  all -1 row, a labelled frame without an image (no face found).
* BP4D: ``AUCoding/AU_OCC/<subject>_<task>.csv`` (more AU columns than the 12, 9 = unknown)
  and ``2DFaces/<subject>/<task>/<frame>.jpg`` with a different zero-padding per folder
  (``0001.jpg``, ``01230.jpg``, ``001.jpg``, ``1.png``), an all-9 row, a missing image.
* DISFA: ``ActionUnit_Labels/<SN>/<SN>_au<n>.txt`` (``frame,intensity``) and
  ``Images/<SN>/<n>.{png,jpg}``, 0-based in two folders and 1-based in one, a missing image,
  and optionally an AU file that lacks a frame.

Every image is one flat colour that encodes (video, frame) (``frame_color``), so a test can
check that an example's pixels come from the right file (e.g. DISFA's off-by-one).
"""

import dataclasses
import io
import pathlib

import numpy as np
from PIL import Image

from mlt_flax import aus

# Bad inputs a fixture can inject. Label-line kinds stop a build or are skipped by
# --skip_bad; "header" and "unknown_subject" always stop it; image kinds name the file.
BAD_LINE_KINDS = ("fields", "non_numeric", "out_of_range")
BAD_IMAGE_KINDS = ("empty_image", "not_image", "truncated_image")

AFFWILD2_SIDE = 112  # cropped_aligned faces are 112x112
SMALL_SIDE = 16  # BP4D / DISFA frames: any size will do for tests

# Aff-Wild2: split folder -> [(video, number of label lines)].
AFFWILD2_VIDEOS = {
    "Train_Set": [("1-30-1280x720", 5), ("video5_left", 3), ("video5_right", 3)],
    "Validation_Set": [("118-30-640x480", 4)],
}
AFFWILD2_SPLITS = {"Train_Set": "train", "Validation_Set": "validation"}
# BP4D AU_OCC header: column 0 = frame, then more AUs than the 12 standard ones.
BP4D_HEADER = (0, 1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 23, 24,
               27, 28)
# BP4D: (subject, task, first frame, number of frames, file-name digits, suffix, split).
BP4D_VIDEOS = (
    ("F001", "T1", 1, 4, 4, ".jpg", "fold1"),  # 0001.jpg
    ("F001", "T2", 1230, 3, 5, ".jpg", "fold1"),  # 01230.jpg
    ("M011", "T1", 1, 3, 3, ".jpg", "fold2"),  # 001.jpg
    ("F007", "T1", 1, 3, 0, ".png", "fold3"),  # 1.png (no padding)
)
# DISFA: (subject, number of frames, number of the first image file, suffix, split).
DISFA_SUBJECTS = (
    ("SN002", 5, 0, ".png", "fold1"),  # 0.png is label frame 1
    ("SN013", 4, 1, ".jpg", "fold2"),  # 1.jpg is label frame 1
    ("SN003", 4, 0, ".jpg", "fold3"),
)


@dataclasses.dataclass(frozen=True)
class Example:
  """What the builder must write for one frame."""
  labels: tuple[int, ...]
  subject: str
  color: tuple[int, int, int]  # the flat colour of its image


@dataclasses.dataclass
class Fixture:
  """A written manual dir and what a build of it must give.

  Attributes:
    manual_dir: the directory to pass as manual_dir.
    examples: {split: {(video, frame): Example}} a build (with --skip_bad if ``bad``) writes.
    missing: {split: frames listed in a label file that have no image}.
    skipped: {split: bad lines + bad images a --skip_bad build skips}.
    bad_file: the file a build error must name (None without ``bad``).
    bad_line: the 1-based line it must name (None for images and file-level errors).
  """
  manual_dir: pathlib.Path
  examples: dict[str, dict[tuple[str, int], Example]]
  missing: dict[str, int]
  skipped: dict[str, int]
  bad_file: pathlib.Path | None = None
  bad_line: int | None = None


def frame_color(video_index: int, frame: int) -> tuple[int, int, int]:
  """The flat colour of a frame: red steps by 37 per frame, green by video."""
  return (frame * 37 % 256, (video_index * 70 + 30) % 256, 128)


def write_image(path: pathlib.Path, color: tuple[int, int, int], side: int) -> None:
  """Writes a side x side flat-colour image, JPEG or PNG by suffix."""
  path.parent.mkdir(parents=True, exist_ok=True)
  pixels = np.broadcast_to(np.array(color, np.uint8), (side, side, 3))
  Image.fromarray(np.ascontiguousarray(pixels)).save(
      path, "PNG" if path.suffix == ".png" else "JPEG", quality=95)


def corrupt_image(path: pathlib.Path, kind: str) -> None:
  """Replaces an image by a zero-byte file, a text file, or its first half."""
  if kind == "empty_image":
    path.write_bytes(b"")
  elif kind == "not_image":
    path.write_bytes(b"this is not an image\n")
  elif kind == "truncated_image":
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
  else:
    raise ValueError(f"unknown image corruption {kind!r}")


def bad_value_line(kind: str, num_values: int, prefix: str = "") -> str:
  """A data line of ``num_values`` zeros after ``prefix``, malformed as ``kind`` says.

  "fields": one value too many; "non_numeric": the first value is "x"; "out_of_range": the
  first value is 7 (no dataset allows 7).
  """
  values = ["0"] * num_values
  if kind == "fields":
    values.append("0")
  elif kind == "non_numeric":
    values[0] = "x"
  elif kind == "out_of_range":
    values[0] = "7"
  else:
    raise ValueError(f"unknown bad line {kind!r}")
  return prefix + ",".join(values)


def _write_lines(path: pathlib.Path, lines: list[str], line_end: str = "\n") -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes((line_end.join(lines) + line_end).encode())


def write_affwild2(root: pathlib.Path, *, bad: str | None = None, missing_image: bool = True,
                   unannotated_row: bool = True, line_end: str = "\n") -> Fixture:
  """Writes an Aff-Wild2 AU-track manual dir under ``root``.

  Args:
    root: the manual dir (created).
    bad: one of BAD_LINE_KINDS, "header" or BAD_IMAGE_KINDS, injected in the train split.
    missing_image: frame 3 of the first video has no image (no face found).
    unannotated_row: frame 2 of the first video is all -1.
    line_end: "\\n" or "\\r\\n" (files edited on Windows).
  """
  rng = np.random.default_rng(0)
  labels_root = root / "Third ABAW Annotations" / "AU_Detection_Challenge"
  num_aus = len(aus.AFFWILD2)
  fixture = Fixture(root, {}, {}, {})
  video_index = 0
  for folder, videos in AFFWILD2_VIDEOS.items():
    split = AFFWILD2_SPLITS[folder]
    examples = fixture.examples.setdefault(split, {})
    fixture.missing[split] = fixture.skipped[split] = 0
    for video, num_frames in videos:
      first = video_index == 0
      subject = video.removesuffix("_left").removesuffix("_right")
      # Header line: AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26
      lines = [",".join(aus.names(aus.AFFWILD2))]
      for frame in range(1, num_frames + 1):
        row = rng.integers(0, 2, num_aus)
        if first and unannotated_row and frame == 2:
          row[:] = -1
        lines.append(",".join(str(v) for v in row))
        color = frame_color(video_index, frame)
        if first and missing_image and frame == 3:
          fixture.missing[split] += 1
        else:
          write_image(root / "cropped_aligned" / video / f"{frame:05d}.jpg", color,
                      AFFWILD2_SIDE)
          examples[(video, frame)] = Example(tuple(int(v) for v in row), subject, color)
      path = labels_root / folder / f"{video}.txt"
      if first and bad == "header":
        lines[0] = lines[0].replace("AU26", "AU27")
        fixture.bad_file, fixture.bad_line = path, 1
      elif first and bad in BAD_LINE_KINDS:
        frame = 4  # data line i is frame i, file line i + 1
        lines[frame] = bad_value_line(bad, num_aus)
        fixture.bad_file, fixture.bad_line = path, frame + 1
        del examples[(video, frame)]
        fixture.skipped[split] += 1
      elif video == "video5_left" and bad in BAD_IMAGE_KINDS:
        fixture.bad_file = root / "cropped_aligned" / video / "00001.jpg"
        corrupt_image(fixture.bad_file, bad)
        del examples[(video, 1)]
        fixture.skipped[split] += 1
      _write_lines(path, lines, line_end)
      video_index += 1
  return fixture


def write_bp4d(root: pathlib.Path, *, bad: str | None = None, missing_image: bool = True,
               unknown_row: bool = True) -> Fixture:
  """Writes a BP4D manual dir under ``root``.

  Args:
    root: the manual dir (created).
    bad: one of BAD_LINE_KINDS, "header" (AU14 column missing), "duplicate" (a frame's row
      twice), "unknown_subject" (an extra F099_T1.csv) or BAD_IMAGE_KINDS.
    missing_image: the last frame of M011_T1 has no image.
    unknown_row: frame 2 of F001_T1 is all 9 (unknown).
  """
  rng = np.random.default_rng(1)
  labels_dir = root / "AUCoding" / "AU_OCC"
  fixture = Fixture(root, {}, {}, {})
  for split in ("fold1", "fold2", "fold3"):
    fixture.examples[split], fixture.missing[split], fixture.skipped[split] = {}, 0, 0
  columns = [BP4D_HEADER.index(au) for au in aus.BP4D]
  for video_index, (subject, task, start, count, digits, suffix, split) in enumerate(
      BP4D_VIDEOS):
    video = f"{subject}_{task}"
    examples = fixture.examples[split]
    header = list(BP4D_HEADER)
    if video_index == 0 and bad == "header":
      header.remove(14)
    # Header row: 0,1,2,4,5,...  (column 0 = frame number, then AU numbers)
    lines = [",".join(map(str, header))]
    for i, frame in enumerate(range(start, start + count)):
      row = rng.choice([0, 1, 9], size=len(BP4D_HEADER), p=[0.5, 0.4, 0.1])
      if video_index == 0 and unknown_row and i == 1:
        row[:] = 9
      row[0] = frame
      lines.append(",".join(str(v) for j, v in enumerate(row) if BP4D_HEADER[j] in header))
      labels = tuple(-1 if row[c] == 9 else int(row[c]) for c in columns)
      color = frame_color(video_index, frame)
      if video == "M011_T1" and missing_image and i == count - 1:
        fixture.missing[split] += 1
        continue
      write_image(root / "2DFaces" / subject / task / f"{frame:0{digits}d}{suffix}", color,
                  SMALL_SIDE)
      examples[(video, frame)] = Example(labels, subject, color)
    path = labels_dir / f"{video}.csv"
    if video_index == 0 and bad == "header":
      fixture.bad_file, fixture.bad_line = path, 1
    elif video_index == 0 and bad in BAD_LINE_KINDS:
      line = 4  # header + frames 1, 2: the row of frame 3
      lines[line - 1] = bad_value_line(bad, len(BP4D_HEADER) - 1, prefix="3,")
      fixture.bad_file, fixture.bad_line = path, line
      del examples[(video, 3)]
      fixture.skipped[split] += 1
    elif video_index == 0 and bad == "duplicate":
      lines.append(lines[2])  # frame 2's row again; the first one is kept by --skip_bad
      fixture.bad_file, fixture.bad_line = path, len(lines)
      fixture.skipped[split] += 1
    elif video == "F007_T1" and bad in BAD_IMAGE_KINDS:
      fixture.bad_file = root / "2DFaces" / subject / task / f"{start}{suffix}"
      corrupt_image(fixture.bad_file, bad)
      del examples[(video, start)]
      fixture.skipped[split] += 1
    _write_lines(labels_dir / f"{video}.csv", lines)
  if bad == "unknown_subject":
    fixture.bad_file = labels_dir / "F099_T1.csv"
    _write_lines(fixture.bad_file, [",".join(map(str, BP4D_HEADER)),
                                    ",".join(["1"] + ["0"] * (len(BP4D_HEADER) - 1))])
  return fixture


def write_disfa(root: pathlib.Path, *, bad: str | None = None, missing_image: bool = True,
                short_au_file: bool = False) -> Fixture:
  """Writes a DISFA manual dir under ``root``.

  Args:
    root: the manual dir (created).
    bad: one of BAD_LINE_KINDS, "duplicate" (a frame listed twice), "unknown_subject" (an
      extra SN099 folder) or BAD_IMAGE_KINDS.
    missing_image: the last frame of SN003 has no image.
    short_au_file: SN013_au26.txt lacks frame 2 (that AU is then -1 for that frame).
  """
  rng = np.random.default_rng(2)
  labels_dir = root / "ActionUnit_Labels"
  fixture = Fixture(root, {}, {}, {})
  for video_index, (subject, count, first_file, suffix, split) in enumerate(DISFA_SUBJECTS):
    intensities = rng.integers(0, 6, size=(count, len(aus.DISFA)))
    labels = np.where(intensities >= 2, 1, 0)  # present iff intensity >= 2
    fixture.missing[split], fixture.skipped[split] = 0, 0
    for a, au in enumerate(aus.DISFA):
      path = labels_dir / subject / f"{subject}_au{au}.txt"
      # Lines: frame,intensity  (1-based frames)
      lines = [f"{frame},{intensities[frame - 1, a]}" for frame in range(1, count + 1)]
      if subject == "SN013" and au == 26 and short_au_file:
        del lines[1]
        labels[1, a] = -1
      if video_index == 0 and au == 4 and bad in BAD_LINE_KINDS:
        lines[2] = bad_value_line(bad, 1, prefix="3,")
        fixture.bad_file, fixture.bad_line = path, 3
        labels[2, a] = -1  # a --skip_bad build loses only AU4 of frame 3
        fixture.skipped[split] += 1
      if video_index == 0 and au == 4 and bad == "duplicate":
        lines.append(lines[1])  # frame 2 again; the first one is kept by --skip_bad
        fixture.bad_file, fixture.bad_line = path, len(lines)
        fixture.skipped[split] += 1
      _write_lines(path, lines)
    examples = fixture.examples[split] = {}
    for frame in range(1, count + 1):
      color = frame_color(video_index, frame)
      if subject == "SN003" and missing_image and frame == count:
        fixture.missing[split] += 1
        continue
      image = root / "Images" / subject / f"{frame - 1 + first_file}{suffix}"
      write_image(image, color, SMALL_SIDE)
      examples[(subject, frame)] = Example(tuple(int(v) for v in labels[frame - 1]), subject,
                                           color)
      if subject == "SN013" and frame == 1 and bad in BAD_IMAGE_KINDS:
        fixture.bad_file = image
        corrupt_image(image, bad)
        del examples[(subject, frame)]
        fixture.skipped[split] += 1
  if bad == "unknown_subject":
    fixture.bad_file = labels_dir / "SN099"
    for au in aus.DISFA:
      _write_lines(fixture.bad_file / f"SN099_au{au}.txt", ["1,0"])
  return fixture


def image_bytes(color: tuple[int, int, int], side: int, fmt: str = "JPEG") -> bytes:
  """A flat-colour image encoded in memory (for parser unit tests)."""
  buffer = io.BytesIO()
  pixels = np.broadcast_to(np.array(color, np.uint8), (side, side, 3))
  Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, fmt)
  return buffer.getvalue()
