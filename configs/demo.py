"""The embedded default: the MLT on a small CNN at 112x112 (8x8 tokens), for a 2-core CPU."""

from configs import abaw3


def get_config():
  config = abaw3.get_config()
  config.model.backbone = "small_cnn"  # 112x112 -> 8x8 patch tokens, as InceptionV3 at 299
  config.model.pretrained = ""  # no ImageNet weights for the small CNN: trained from scratch
  config.model.image_size = 112  # the native size of Aff-Wild2 cropped-aligned frames
  config.train.batch_size = 32
  return config
