"""The plain-CNN reference on the demo's frames: a textbook conv net with a textbook recipe.

`configuration.plain_cnn_reference` says what it is (four conv blocks, pooled dense head, Adam
1e-3, plain BCE, small translations, 25 epochs at batch 32); `make demo` trains it beside the
MLT and prints both (docs/recipe.md, "The plain-CNN reference"). Train it alone with
  python -m mlt_flax.main --config=configs/plain_cnn.py --workdir=workdir/plain_cnn
"""

from configs import demo
from mlt_flax import configuration


def get_config():
  return configuration.plain_cnn_reference(demo.get_config())
