"""Builds one licensed AU dataset as a TFDS dataset, from its manual directory.

Usage:
  python -m mlt_flax.data.build --dataset=abaw3_au --manual_dir=DIR --data_dir=DIR [--skip_bad]

``--dataset`` is one of ``abaw3_au``, ``bp4d``, ``disfa``; ``--manual_dir`` holds the dataset
as it ships (see each builder's MANUAL_DOWNLOAD_INSTRUCTIONS); the result lands in
``<data_dir>/<dataset>/1.0.0/`` with a ``summary.json``. A malformed input stops the build
with a one-line message naming the file (and line); ``--skip_bad`` skips such lines/images
and lists them in the summary instead. The same builds run through TFDS's own CLI:
  tfds build abaw3_au --imports=mlt_flax.data.abaw3_au --manual_dir=DIR --data_dir=DIR
  tfds build abaw3_au/skip_bad=True --imports=mlt_flax.data.abaw3_au ...
What a build writes: docs/datasets.md, "## What the builders write".
"""

import contextlib
import io
import sys

from absl import app
from absl import flags
from absl import logging
import tensorflow_datasets as tfds

from mlt_flax.data import abaw3_au
from mlt_flax.data import bp4d
from mlt_flax.data import build_report
from mlt_flax.data import disfa
from mlt_flax.data import label_files

FLAGS = flags.FLAGS

# Dataset name (as in the --dataset flag and in TFDS) -> builder class.
BUILDERS = {
    "abaw3_au": abaw3_au.Abaw3Au,
    "bp4d": bp4d.Bp4d,
    "disfa": disfa.Disfa,
}


def build(dataset: str, manual_dir: str, data_dir: str, skip_bad: bool = False, *,
          details: bool = True) -> tfds.core.DatasetBuilder:
  """Builds ``dataset`` from ``manual_dir`` into ``data_dir``; returns the prepared builder.

  Prints the build's summary (build_report.format_summary, with or without `details`);
  TFDS's own lines go to the log. A dataset already prepared in ``data_dir`` is left as it is.

  Raises:
    label_files.DatasetFormatError: a malformed input (unless skip_bad).
  """
  builder = BUILDERS[dataset](data_dir=data_dir, skip_bad=skip_bad, print_summary=False)
  if builder.is_prepared():
    print(f"{dataset} is already built in {builder.data_dir}; delete that folder to rebuild.")
    return builder
  with contextlib.redirect_stdout(io.StringIO()) as tfds_lines:  # 'Downloading and ...'
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  logging.info("TFDS, building %s:\n%s", dataset, tfds_lines.getvalue())
  print(build_report.format_summary(builder.info.metadata["summary"], details), flush=True)
  return builder


def define_flags():
  """The CLI's flags (defined only when run as a program, so that importing defines none)."""
  flags.DEFINE_enum("dataset", None, list(BUILDERS), "Dataset to build.", required=True)
  flags.DEFINE_string("manual_dir", None, "The dataset as it ships (see the builder's "
                      "MANUAL_DOWNLOAD_INSTRUCTIONS).", required=True)
  flags.DEFINE_string("data_dir", None, "TFDS data dir to write into; the dataset lands in "
                      "<data_dir>/<dataset>/<version>/.", required=True)
  flags.DEFINE_bool("skip_bad", False, "Skip malformed label lines and images (listed in the "
                    "summary) instead of stopping at the first one.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}; every option is a --flag")
  try:
    builder = build(FLAGS.dataset, FLAGS.manual_dir, FLAGS.data_dir, FLAGS.skip_bad)
  except label_files.DatasetFormatError as e:
    sys.exit(f"error: {e}")
  print(f"{builder.name} is in {builder.data_dir}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
