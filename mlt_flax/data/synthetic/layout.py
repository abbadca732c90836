"""Where the generator writes what: the Aff-Wild2 (ABAW3 AU track) layout, exactly.

The names come from ``mlt_flax.data.affwild2_format``, the layout the ``abaw3_au`` builder
reads (docs/datasets.md, "## Aff-Wild2 (ABAW3 AU track)")::

  <out_dir>/cropped_aligned/<video>/<frame:05d>.jpg         112x112 RGB JPEG, 1-based numbers;
                                                            faceless frames are absent
  <out_dir>/AU_Detection_Challenge/Train_Set/<video>.txt    header AU1,AU2,...,AU26, then one
  <out_dir>/AU_Detection_Challenge/Validation_Set/<video>.txt   line per frame: 0, 1 or -1
  <out_dir>/AU_Detection_Challenge/Test_Set/<video>.txt     the same, when num_test_videos > 0
  <out_dir>/generator.json                                  seed, parameters and a summary

Two-person videos are written as two videos, ``<id>_left`` and ``<id>_right``.
"""

from mlt_flax.data import affwild2_format as affwild2
from mlt_flax.data import label_files

# The AU order of every label row (the Aff-Wild2 challenge header), and each AU's column.
AU_ORDER = affwild2.AUS
AU_INDEX = {au: i for i, au in enumerate(AU_ORDER)}

IMAGES_DIR = affwild2.IMAGES_FOLDER
LABELS_DIR = affwild2.LABELS_FOLDER
SPLIT_DIRS = affwild2.SPLIT_FOLDERS
FRAME_NAME = affwild2.FRAME_NAME
FIRST_FRAME = label_files.FIRST_FRAME
NOT_ANNOTATED = label_files.NOT_ANNOTATED
PAIR_SUFFIXES = affwild2.PAIR_SUFFIXES
# Written last, so its presence means "this folder holds a complete generation".
PARAMS_FILENAME = "generator.json"
