"""The demo recipe on the second benchmark: digit videos made from real handwritten scans.

mlt_flax/data/digit_videos.py says what they are (multi-label, segment-structured videos in the
Aff-Wild2 layout, from the 8x8 scans in scikit-learn's wheel; train and validation share no
scan). Every training and scoring setting is the demo's, untouched: the recipe was designed on
the synthetic AU videos and is only measured here, beside the plain-CNN reference.

  python -m mlt_flax.main --config=configs/demo_digits.py --workdir=workdir/demo_digits --mode=demo
"""

from configs import demo


def get_config():
  config = demo.get_config()
  config.demo.dataset = "digits"
  config.demo.synthetic_dir = "data/digit_videos"
  config.data.data_dir = "data/tfds_digits"
  config.demo.num_test_videos = 0  # the generator's default (10, as its validation videos)
  # The digit videos' labels hold for 6-30 frames, as the synthetic AU events' 5-40.
  return config
