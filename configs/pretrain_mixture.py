"""Pretraining stage 2: Aff-Wild2 0.75 / DISFA 0.125 / BP4D 0.125 on the 17-AU union.

Start it from stage 1 with --config.init_from=<stage 1 workdir>. Everything else is stage 1's,
the backbone learning rate 5e-4 included (the authors' 17-AU grids, used for this mixture too).
"""

from configs import pretrain_bp4d_disfa


def get_config():
  config = pretrain_bp4d_disfa.get_config()
  config.data.datasets = ("abaw3_au", "disfa", "bp4d")
  config.data.weights = (0.75, 0.125, 0.125)  # the mixture one of the authors' runs used
  config.data.train_splits = ("train", pretrain_bp4d_disfa.ALL_FOLDS,
                              pretrain_bp4d_disfa.ALL_FOLDS)
  return config
