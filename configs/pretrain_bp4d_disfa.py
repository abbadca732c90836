"""Pretraining stage 1 (docs/recipe.md, "Pretraining configs"): BP4D + DISFA on the 17-AU union.

Labels a dataset does not code are -1 and masked out of the loss; no mixup with partial
labels; channel drop 0.1; backbone learning rate 5e-4 (fine-tuning: 5e-5). Validated on
Aff-Wild2 (its 12 AUs scored, the other 5 are -1).
Then stage 2 (configs/pretrain_mixture.py) and fine-tuning (configs/abaw3.py with
--config.init_from=<stage 2 workdir>), which maps the 17 label tokens to 12 by AU name.
"""

from configs import abaw3

ALL_FOLDS = "fold1+fold2+fold3"  # the three standard subject folds, all used for pretraining


def get_config():
  config = abaw3.get_config()
  config.data.datasets = ("bp4d", "disfa")
  config.data.weights = (0.5, 0.5)  # one frame of each in turn, on average
  config.data.train_splits = (ALL_FOLDS, ALL_FOLDS)
  config.data.label_space = "union17"  # AU 1 2 4 5 6 7 9 10 12 14 15 17 20 23 24 25 26
  config.augment.mixup = False  # never with partial labels
  config.augment.channel_drop_prob = 0.1  # the pretraining value
  config.optim.backbone_lr = 5e-4  # the authors' 17-AU grids, and the paper's §4.2 value
  return config
