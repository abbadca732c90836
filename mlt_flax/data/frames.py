"""The frame folders of the AU datasets: which file is which frame, and whether it decodes.

Plain Python + PIL: ``index_frames`` maps the image files of one folder to their frame
numbers, whatever the zero-padding of the names; ``read_image`` returns an image's encoded
bytes after checking that they decode (problems go to a ``label_files.Problems``).
"""

import io
import os
import pathlib
import re
from typing import Iterable, Mapping

from PIL import Image

from mlt_flax.data import label_files

# Frame files we read, by lower-cased suffix, and the PIL formats we accept inside them.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IMAGE_FORMATS = ("JPEG", "PNG")
# JPEGs are decoded at 1/8 scale when validated: libjpeg still reads the whole stream (so a
# truncated file still fails) but skips most of the work on BP4D's 1040x1392 frames.
JPEG_DRAFT_SCALE = 8


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
    label_files.DatasetFormatError: two files carry the same number (``1.jpg``, ``0001.jpg``).
  """
  folder = pathlib.Path(folder)
  index = {}
  for name in sorted(names):
    stem, suffix = os.path.splitext(name)
    if suffix.lower() not in IMAGE_SUFFIXES or not re.fullmatch(r"[0-9]+", stem):
      continue
    number = int(stem)
    if number in index:
      raise label_files.DatasetFormatError(
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
  return {number + label_files.FIRST_FRAME: path for number, path in index.items()}


def read_image(path: os.PathLike | str, problems: label_files.Problems) -> bytes | None:
  """The encoded bytes of a JPEG/PNG frame after checking that it fully decodes.

  Returns:
    The file's bytes, unchanged; None if it is unreadable and ``problems.skip_bad``.

  Raises:
    label_files.DatasetFormatError: an empty, non-image or truncated file (unless skip_bad).
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
