"""TFDS builder ``bp4d``: BP4D-Spontaneous AU occurrence, the 12 standard AUs.

One example per frame of ``AUCoding/AU_OCC/<subject>_<task>.csv`` that has an image; the
splits are the three subject folds of the JAA-Net protocol, so a run trains on
``fold1+fold2`` and validates on ``fold3`` (and rotates). Build it with

  python -m mlt_flax.data.build --dataset=bp4d --manual_dir=DIR --data_dir=DIR

The label format: ``bp4d_format``, docs/datasets.md, "## BP4D".
"""

import pathlib

import tensorflow_datasets as tfds

from mlt_flax import aus
from mlt_flax.data import au_builder
from mlt_flax.data import bp4d_format
from mlt_flax.data import examples
from mlt_flax.data import frames
from mlt_flax.data import label_files

# The 12 standard AUs, in label order, and the names stored in the dataset's metadata.
AUS = aus.BP4D
AU_NAMES = aus.names(AUS)
# The three subject folds of JAA-Net (Shao et al., ECCV 2018); each is a split.
FOLDS = {
    "fold1": ("F001", "M007", "F018", "F008", "F002", "M004", "F010", "F009", "M012", "M001",
              "F016", "M014", "F023", "M008"),
    "fold2": ("M011", "F003", "M010", "M002", "F005", "F022", "M018", "M017", "F013", "M016",
              "F020", "F011", "M013", "M005"),
    "fold3": ("F007", "F015", "F006", "F019", "M006", "M009", "F012", "M003", "F004", "F021",
              "F017", "M015", "F014"),
}
# Labels: AUCoding/AU_OCC/<subject>_<task>.csv; images: 2DFaces/<subject>/<task>/<frame>.jpg.
LABELS_FOLDER = pathlib.Path("AUCoding", "AU_OCC")
LABEL_PATTERN = "*.csv"
IMAGES_FOLDER = "2DFaces"


def read_folds(manual_dir: pathlib.Path,
               stats: dict[str, examples.SplitStats]) -> dict[str, list[examples.Video]]:
  """Parses every AU_OCC file into the videos of its subject's fold.

  Args:
    manual_dir: the BP4D manual dir.
    stats: {fold: SplitStats}; each file's bad lines go to its fold's ``problems``.

  Returns:
    {fold: videos}, video ``<subject>_<task>`` with frames from ``2DFaces/<subject>/<task>/``.

  Raises:
    label_files.DatasetFormatError: missing folders, a file name that is not
      ``<subject>_<task>.csv``, a subject in no fold, or a bad file (see bp4d_format.parse_occ).
  """
  labels_dir = manual_dir / LABELS_FOLDER
  paths = label_files.label_paths(labels_dir, LABEL_PATTERN)
  if not paths:
    raise label_files.DatasetFormatError(
        f"{labels_dir}: no <subject>_<task>.csv label files found")
  folds = {fold: [] for fold in FOLDS}
  for path in paths:
    subject, task = bp4d_format.subject_and_task(path)
    fold = label_files.fold_of(subject, FOLDS, path)
    labels = bp4d_format.parse_occ(label_files.read_lines(path), path, stats[fold].problems,
                                   AUS)
    folds[fold].append(examples.Video(
        name=f"{subject}_{task}",
        subject=subject,
        labels=labels,
        images=frames.list_frames(manual_dir / IMAGES_FOLDER / subject / task),
    ))
  for videos in folds.values():
    examples.require_images(videos, manual_dir / IMAGES_FOLDER,
                            f"{IMAGES_FOLDER}/<subject>/<task>/<frame>.jpg")
  return folds


class Bp4d(au_builder.AuFramesBuilder):
  """BP4D AU occurrence: 12 AUs, splits ``fold1``, ``fold2``, ``fold3`` (by subject)."""

  name = "bp4d"
  AUS = AUS
  HOMEPAGE = "https://www.cs.binghamton.edu/~lijun/Research/3DFE/3DFE_Analysis.html"
  SPLITS = tuple(FOLDS)
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
  BP4D-Spontaneous is licensed: request it from Binghamton University. The manual dir must
  hold
    {LABELS_FOLDER.as_posix()}/<subject>_<task>.csv   e.g. F001_T1.csv
    {IMAGES_FOLDER}/<subject>/<task>/<frame>.jpg         (or .png) e.g. 2DFaces/F001/T1/0001.jpg
  Each csv has a header row of integers: column 0 is the frame number, every other column an
  AU number; values are 0, 1 or 9 (unknown, stored as -1). The AUs {list(AUS)} are selected
  by header. The zero-padding of frame file names (0001.jpg, 001.jpg, 1.jpg, ...) is read
  from the files themselves. Frames with no image are skipped and counted in summary.json.
  """

  def read_splits(self, manual_dir, stats):
    return read_folds(manual_dir, stats)
