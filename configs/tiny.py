"""A tiny config for tests: small CNN at 64x64, one layer each, a handful of labels' worth."""

from configs import abaw3


def get_config():
  config = abaw3.get_config()
  config.model.backbone = "small_cnn"  # 64x64 -> 2x2 tokens: compiles and runs in seconds
  config.model.pretrained = ""
  config.model.image_size = 64
  config.model.small_cnn_widths = (8, 16, 16)
  config.model.small_cnn_features = 16
  config.model.d_model = 16
  config.model.num_heads = 2
  config.model.mlp_dim = 32
  config.model.num_decoder_layers = 1
  config.train.batch_size = 8
  config.eval.batch_size = 16
  return config
