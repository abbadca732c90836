"""Writes a synthetic AU video dataset in the Aff-Wild2 layout.

Usage:
  python -m mlt_flax.data.synthetic --out_dir=data/synthetic [--seed=0] [--num_workers=2]
      [--num_train_videos=24 --num_val_videos=8 --frames_per_video=200]
      [--contact_sheet=sheet.png]

Prints the generation's summary (per split: videos, pairs, frames, images, AU positive
rates) as JSON; a rerun with the same parameters is skipped. Build it as a TFDS dataset with
``python -m mlt_flax.data.build --dataset=abaw3_au --manual_dir=<out_dir> --data_dir=DIR``.
"""

import json

from absl import app
from absl import flags

from mlt_flax.data.synthetic import config
from mlt_flax.data.synthetic import preview
from mlt_flax.data.synthetic import writer

FLAGS = flags.FLAGS


def define_flags():
  """The CLI's flags (defined only when run as a program, so that importing defines none)."""
  defaults = config.SyntheticConfig()
  flags.DEFINE_string("out_dir", None, "Dataset root to write (cropped_aligned/, "
                      "AU_Detection_Challenge/, generator.json).", required=True)
  flags.DEFINE_integer("seed", 0, "Seed of the dataset: the same seed gives the same bytes.")
  flags.DEFINE_integer("num_train_videos", defaults.num_train_videos,
                       "Videos in Train_Set (a two-person _left/_right pair counts as two).")
  flags.DEFINE_integer("num_val_videos", defaults.num_val_videos, "Videos in Validation_Set.")
  flags.DEFINE_integer("num_test_videos", defaults.num_test_videos,
                       "Videos in Test_Set (the labelled split nothing selects on).")
  flags.DEFINE_integer("frames_per_video", defaults.frames_per_video, "Mean video length.")
  flags.DEFINE_integer("image_size", defaults.image_size, "Side of the stored square crops.")
  flags.DEFINE_integer("num_workers", 1, "Processes rendering videos in parallel (the output "
                       "does not depend on it).")
  flags.DEFINE_bool("overwrite", False, "Replace a folder of non-generated data in out_dir.")
  flags.DEFINE_string("contact_sheet", None, "Also save a PNG grid of captioned training "
                      "frames to this path.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}; every option is a --flag")
  summary = writer.generate(FLAGS.out_dir, seed=FLAGS.seed,
                            num_train_videos=FLAGS.num_train_videos,
                            num_val_videos=FLAGS.num_val_videos,
                            num_test_videos=FLAGS.num_test_videos,
                            frames_per_video=FLAGS.frames_per_video,
                            image_size=FLAGS.image_size, num_workers=FLAGS.num_workers,
                            overwrite=FLAGS.overwrite)
  print(json.dumps(summary, indent=1))
  if FLAGS.contact_sheet:
    preview.contact_sheet(FLAGS.out_dir, FLAGS.contact_sheet)


if __name__ == "__main__":
  define_flags()
  app.run(main)
