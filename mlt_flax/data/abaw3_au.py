"""TFDS builder ``abaw3_au``: the Aff-Wild2 Action Unit track of ABAW3 (CVPR 2022).

One example per annotated frame of the challenge's ``Train_Set`` / ``Validation_Set`` label
files (and of a ``Test_Set`` folder where the manual dir has one: split ``test``): its cropped-aligned face image, or ``face = False`` where the frame has none; see ``Abaw3Au.MANUAL_DOWNLOAD_INSTRUCTIONS`` for
the manual directory. Build it with

  python -m mlt_flax.data.build --dataset=abaw3_au --manual_dir=DIR --data_dir=DIR

or ``tfds build abaw3_au --imports=mlt_flax.data.abaw3_au --manual_dir=DIR --data_dir=DIR``.
The layout and label format: ``affwild2_format``, docs/datasets.md, "## Aff-Wild2 (ABAW3 AU
track)".
"""

import os
import pathlib
import unicodedata

import tensorflow_datasets as tfds

from mlt_flax import aus
from mlt_flax.data import affwild2_format as affwild2
from mlt_flax.data import au_builder
from mlt_flax.data import examples
from mlt_flax.data import frames
from mlt_flax.data import label_files

# The label order of the challenge files, and the names stored in the dataset's metadata.
AUS = affwild2.AUS
AU_NAMES = aus.names(AUS)
# How deep under the manual dir to look for the challenge's label folder (it may sit anywhere
# under it); the image folder is never walked (millions of files).
MAX_SEARCH_DEPTH = 4


def find_labels_folder(manual_dir: os.PathLike | str) -> pathlib.Path:
  """The one ``AU_Detection_Challenge`` folder within MAX_SEARCH_DEPTH levels of ``manual_dir``.

  Raises:
    label_files.DatasetFormatError: none or several found.
  """
  manual_dir = pathlib.Path(manual_dir)
  found = []
  for root, dirs, _ in os.walk(manual_dir):
    depth = len(pathlib.Path(root).relative_to(manual_dir).parts)
    if affwild2.LABELS_FOLDER in dirs:
      found.append(pathlib.Path(root) / affwild2.LABELS_FOLDER)
    # Prune: no need to look inside the images or the labels, nor too deep.
    skip = (affwild2.IMAGES_FOLDER, affwild2.LABELS_FOLDER)
    dirs[:] = [] if depth + 1 >= MAX_SEARCH_DEPTH else sorted(d for d in dirs if d not in skip)
  if len(found) != 1:
    raise label_files.DatasetFormatError(
        f"{manual_dir}: found {len(found)} {affwild2.LABELS_FOLDER} folders "
        f"{[str(f) for f in found]}; expected exactly one (within {MAX_SEARCH_DEPTH} levels)")
  return found[0]


def _nfc(name: str) -> str:
  return unicodedata.normalize("NFC", name)


def video_folder(images_dir: pathlib.Path, video: str,
                 by_nfc: dict[str, pathlib.Path]) -> pathlib.Path:
  """The frame folder of ``video``: ``images_dir/<video>``, or the folder whose name is the
  same text in another Unicode form (archives made on macOS decompose ``é`` into ``e`` and
  a combining accent, most other tools keep it composed).

  Args:
    images_dir: the ``cropped_aligned`` folder.
    video: the label file's stem.
    by_nfc: {NFC name: folder} of ``images_dir``, filled on first need (one listing).
  """
  folder = images_dir / video
  if folder.is_dir() or video.isascii():  # ASCII names have one Unicode form
    return folder
  if not by_nfc:
    by_nfc.update((_nfc(p.name), p) for p in images_dir.iterdir() if p.is_dir())
  return by_nfc.get(_nfc(video), folder)


def read_split(split_dir: pathlib.Path, images_dir: pathlib.Path,
               problems: label_files.Problems) -> list[examples.Video]:
  """Parses every ``<video>.txt`` of a challenge split folder and indexes its frames.

  ``<video>_left`` / ``<video>_right`` are two videos of subject ``<video>``.
  """
  if not split_dir.is_dir():
    raise label_files.DatasetFormatError(f"{split_dir}: split folder not found")
  videos = []
  by_nfc = {}
  for path in label_files.label_paths(split_dir, "*" + affwild2.LABEL_SUFFIX):
    labels = affwild2.parse_labels(label_files.read_lines(path), path, problems)
    videos.append(examples.Video(
        name=path.stem,
        subject=affwild2.subject_of(path.stem),
        labels=labels,
        images=frames.list_frames(video_folder(images_dir, path.stem, by_nfc)),
    ))
  if not videos:
    raise label_files.DatasetFormatError(
        f"{split_dir}: no {affwild2.LABEL_SUFFIX} label files; expected one per video")
  examples.require_images(videos, images_dir, f"{affwild2.IMAGES_FOLDER}/<video>/<frame>.jpg")
  return videos


class Abaw3Au(au_builder.AuFramesBuilder):
  """Aff-Wild2 AU detection (ABAW3): 12 AUs, splits ``train``, ``validation`` and, where
  the manual dir holds ``Test_Set``, ``test``."""

  name = "abaw3_au"
  KEEP_FACELESS = True
  AUS = AUS
  HOMEPAGE = "https://ibug.doc.ic.ac.uk/resources/cvpr-2022-3rd-abaw/"
  SPLITS = tuple(affwild2.SPLIT_FOLDERS)
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
  Aff-Wild2 is licensed: request it from the ABAW organisers. The manual dir must hold
    cropped_aligned/<video>/<frame>.jpg    face crops (112x112), five-digit 1-based frame
                                           numbers (00001.jpg); frames with no face are absent
    <any folders>/{affwild2.LABELS_FOLDER}/Train_Set/<video>.txt
    <any folders>/{affwild2.LABELS_FOLDER}/Validation_Set/<video>.txt
    <any folders>/{affwild2.LABELS_FOLDER}/Test_Set/<video>.txt  (optional: split 'test')
  Each label file starts with the header {affwild2.header()}
  and its data line i holds frame i's values 0, 1 or -1 (not annotated). Videos of two
  people carry _left / _right and are two videos (subject: the name without the suffix).
  Label lines whose frame has no image are written with face=False (the challenge scores
  every labelled frame) and counted in summary.json; they are never trained on.
  """

  def read_splits(self, manual_dir, stats):
    images_dir = manual_dir / affwild2.IMAGES_FOLDER
    if not images_dir.is_dir():
      raise label_files.DatasetFormatError(f"{images_dir}: image folder not found; expected "
                                           f"{affwild2.IMAGES_FOLDER}/<video>/<frame>.jpg")
    labels_dir = find_labels_folder(manual_dir)
    for split in affwild2.OPTIONAL_SPLITS:
      if not (labels_dir / affwild2.SPLIT_FOLDERS[split]).is_dir():
        del stats[split]  # not in the manual dir: not in the build, nor in its summary
    return {split: read_split(labels_dir / affwild2.SPLIT_FOLDERS[split], images_dir,
                              stats[split].problems)
            for split in stats}
