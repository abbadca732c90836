"""The authors' pretraining chain, stage 2 (docs/recipe.md, "Pretraining configs"): Aff-Wild2
alone, in the 17-AU space, all 17 label tokens kept.

gtallec/DL_ISIR_ABAW3 `experiments/CVPR_Challenge/AU_detection/au_merge/
pretraining_fwbce_main.json`: Aff-Wild2 only (`abaw3_prop: 1.0`), decoder `T: 17`, started
from the BP4D + DISFA weights (`pretrained_weights: "bp4d_disfa/weights.h5"`), frequency-
weighted BCE + Dice, no mixup, every 5th frame; with their 17-AU grid
(`src/hp_grids/au_merge/main/fwbce_dice.json`: backbone lr 5e-4, channel drop 0.1, Dice
weight 0.5). Start it from stage 1 with --config.init_from=<configs/pretrain_bp4d_disfa.py
workdir>; it is scored on Aff-Wild2's 12 AUs, as every run validated on Aff-Wild2.
The project's own chain (configs/pretrain_mixture.py, then configs/abaw3.py at 12 AUs) is
the other road.
"""

from configs import pretrain_bp4d_disfa


def get_config():
  config = pretrain_bp4d_disfa.get_config()  # union17, mixup off, channel drop 0.1, lr 5e-4
  config.data.datasets = ("abaw3_au",)
  config.data.weights = (1.0,)
  config.data.train_splits = ("train",)
  return config
