"""The embedded default: the MLT on a small CNN at 112x112 (8x8 tokens), for a 2-core CPU.

Trains from scratch on the synthetic AU face videos (mlt_flax/data/synthetic/, written in
the Aff-Wild2 layout and built by the real abaw3_au builder into data/tfds), within minutes.
The paper's recipe fine-tunes an ImageNet backbone on ~1M real frames; training a small CNN
from scratch on ~5k frames needs larger transformer learning rates, a shorter warm-up and
milder augmentation (the recipe's 30% channel drop, +-36 degree rotation and mixup hold the
model near chance for the whole short run). Everything else is the recipe's.
"""

from configs import abaw3


def get_config():
  config = abaw3.get_config()
  config.model.backbone = "small_cnn"  # 112x112 -> 8x8 patch tokens, as InceptionV3 at 299
  config.model.pretrained = ""  # no ImageNet weights for the small CNN: trained from scratch
  config.model.image_size = 112  # the native size of Aff-Wild2 cropped-aligned frames
  config.model.small_cnn_widths = (16, 32, 64)  # ~120 training images/s on 2 CPU cores
  config.model.small_cnn_features = 128
  config.demo.num_test_videos = 8  # a labelled test split, scored by benchmarks/heads.py
  config.data.frame_stride = 1  # the synthetic set is small: train and score on every frame
  config.augment.mixup = False
  config.augment.channel_drop_prob = 0.0
  config.augment.rotation_max_turns = 0.02  # +-7 degrees
  config.augment.zoom = 0.05
  config.optim.backbone_lr = 1e-3  # from scratch, not fine-tuning
  config.optim.transformer_batch_tokens = 10000.0  # 2.5x the recipe's transformer lr
  config.optim.warmup_epochs = 0.5
  config.train.batch_size = 32
  config.train.num_steps = 1200  # ~8 epochs of the synthetic training frames (both models peak here)
  config.train.log_every_steps = 50
  config.train.eval_every_steps = 600
  config.train.eval_at_start = True  # the untrained model's F1, printed beside the result
  config.train.checkpoint_every_steps = 600
  config.eval.batch_size = 128
  config.eval.train_f1_stride = 4  # learning curves: training F1 beside validation F1
  # Synthetic AU events last 5-40 frames; the paper's 20-frame window (for real 30 fps video)
  # blurs their edges. Tuning picks the window from eval.smoothing_windows either way.
  config.eval.smoothing_window = 5
  config.eval.smoothing_windows = (3, 5, 7, 9, 11, 15, 20)
  return config
