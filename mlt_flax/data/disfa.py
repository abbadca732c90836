"""TFDS builder ``disfa``: DISFA AU occurrence (intensity >= 2), 12 AUs.

One example per labelled frame of each subject that has an image; the splits are the three
subject folds of the JAA-Net protocol (train on ``fold1+fold2``, validate on ``fold3``, and
rotate). Build it with

  python -m mlt_flax.data.build --dataset=disfa --manual_dir=DIR --data_dir=DIR

The label format: ``disfa_format``, docs/datasets.md, "## DISFA".
"""

import pathlib

import tensorflow_datasets as tfds

from mlt_flax import aus
from mlt_flax.data import au_builder
from mlt_flax.data import disfa_format
from mlt_flax.data import examples
from mlt_flax.data import frames
from mlt_flax.data import label_files

# The 12 coded AUs, in label order, and the names stored in the dataset's metadata.
AUS = aus.DISFA
AU_NAMES = aus.names(AUS)
# The three subject folds of JAA-Net (Shao et al., ECCV 2018); each is a split.
FOLDS = {
    "fold1": ("SN002", "SN010", "SN001", "SN026", "SN027", "SN032", "SN030", "SN009", "SN016"),
    "fold2": ("SN013", "SN018", "SN011", "SN028", "SN012", "SN006", "SN031", "SN021", "SN024"),
    "fold3": ("SN003", "SN029", "SN023", "SN025", "SN008", "SN005", "SN007", "SN017", "SN004"),
}
# Labels: ActionUnit_Labels/<SN>/<SN>_au<n>.txt; images: Images/<SN>/<n>.{png,jpg}.
LABELS_FOLDER = "ActionUnit_Labels"
LABEL_FILE = "{subject}_au{au}.txt"
IMAGES_FOLDER = "Images"


def label_path(labels_dir: pathlib.Path, subject: str, au: int) -> pathlib.Path:
  """``<labels_dir>/<subject>/<subject>_au<au>.txt``."""
  return labels_dir / subject / LABEL_FILE.format(subject=subject, au=au)


def read_subject(labels_dir: pathlib.Path, images_dir: pathlib.Path, subject: str,
                 problems: label_files.Problems) -> examples.Video:
  """Reads the 12 AU files of one subject and indexes its (0- or 1-based) frame folder.

  Raises:
    label_files.DatasetFormatError: an AU file is missing or malformed.
  """
  intensities = []
  for au in AUS:
    path = label_path(labels_dir, subject, au)
    if not path.is_file():
      raise label_files.DatasetFormatError(
          f"{path}: label file not found; expected one file per AU {list(AUS)}")
    intensities.append(disfa_format.parse_intensities(
        label_files.read_lines(path), path, problems))
  return examples.Video(
      name=subject,
      subject=subject,
      labels=disfa_format.occurrence_table(intensities),
      # Frames are commonly extracted 0-based (0.png = label frame 1): detected per folder.
      images=frames.shift_to_one_based(frames.list_frames(images_dir / subject)),
  )


def read_folds(manual_dir: pathlib.Path,
               stats: dict[str, examples.SplitStats]) -> dict[str, list[examples.Video]]:
  """Reads every subject folder of ``ActionUnit_Labels`` into its fold.

  Raises:
    label_files.DatasetFormatError: no subject folders, a subject in no fold, or a bad file.
  """
  labels_dir = manual_dir / LABELS_FOLDER
  subjects = []
  if labels_dir.is_dir():
    subjects = sorted(p.name for p in labels_dir.iterdir()
                      if p.is_dir() and not p.name.startswith("."))
  if not subjects:
    raise label_files.DatasetFormatError(
        f"{labels_dir}: no subject folders; expected {LABELS_FOLDER}/<SN>/<SN>_au<n>.txt")
  folds = {fold: [] for fold in FOLDS}
  for subject in subjects:
    fold = label_files.fold_of(subject, FOLDS, labels_dir / subject)
    folds[fold].append(read_subject(labels_dir, manual_dir / IMAGES_FOLDER, subject,
                                    stats[fold].problems))
  for videos in folds.values():
    examples.require_images(videos, manual_dir / IMAGES_FOLDER, f"{IMAGES_FOLDER}/<SN>/<n>.png")
  return folds


class Disfa(au_builder.AuFramesBuilder):
  """DISFA AU occurrence: 12 AUs, splits ``fold1``, ``fold2``, ``fold3`` (by subject)."""

  name = "disfa"
  AUS = AUS
  HOMEPAGE = "http://mohammadmahoor.com/disfa/"
  SPLITS = tuple(FOLDS)
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
  DISFA is licensed: request it from the University of Denver. The manual dir must hold
    {LABELS_FOLDER}/<SN>/<SN>_au<n>.txt   e.g. SN001/SN001_au1.txt, one per AU {list(AUS)}
    {IMAGES_FOLDER}/<SN>/<n>.png                  (or .jpg) frames extracted from the videos
  Label lines are 'frame,intensity' with 1-based frames and intensities
  {disfa_format.MIN_INTENSITY}-{disfa_format.MAX_INTENSITY}; an AU is present iff
  its intensity is >= {disfa_format.PRESENT_INTENSITY}. Image folders that contain a
  frame 0 (0.png) are 0-based (0.png is label frame 1), others 1-based; the example's frame
  is always the 1-based label frame. Frames with no image are skipped and counted in
  summary.json.
  """

  def read_splits(self, manual_dir, stats):
    return read_folds(manual_dir, stats)
