"""Checks a config before anything is built: each problem names its field and what is expected.

ml_collections already refuses unknown fields and wrongly typed overrides (`--config.x=y`);
this adds the checks of meaning: names from the known sets, positive sizes, an input large
enough for the backbone, and settings that contradict each other.
"""

import ml_collections

from mlt_flax import aus
from mlt_flax import models
from mlt_flax.models import inception_v3
from mlt_flax.models import mlt


class ConfigError(ValueError):
  """A config field holds a value the code cannot run with."""


def _check(ok: bool, field: str, expected: str, value) -> None:
  if not ok:
    raise ConfigError(f"config.{field} = {value!r}: expected {expected}")


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first offending field."""
  m = config.model
  _check(m.backbone in models.BACKBONES, "model.backbone",
         f"one of {sorted(models.BACKBONES)}", m.backbone)
  _check(m.inception_variant in inception_v3.VARIANTS, "model.inception_variant",
         f"one of {inception_v3.VARIANTS}", m.inception_variant)
  _check(m.decoder_layout in mlt.DECODER_LAYOUTS, "model.decoder_layout",
         f"one of {mlt.DECODER_LAYOUTS}", m.decoder_layout)
  _check(m.dtype in models.DTYPES, "model.dtype", f"one of {sorted(models.DTYPES)}", m.dtype)
  for field in ("image_size", "d_model", "num_heads", "mlp_dim", "num_decoder_layers",
                "small_cnn_features"):
    _check(getattr(m, field) > 0, f"model.{field}", "a positive integer", getattr(m, field))
  _check(m.num_encoder_layers >= 0, "model.num_encoder_layers", "an integer >= 0",
         m.num_encoder_layers)
  _check(all(w > 0 for w in m.small_cnn_widths), "model.small_cnn_widths",
         "positive integers", m.small_cnn_widths)
  _check(m.d_model % m.num_heads == 0, "model.d_model",
         f"a multiple of model.num_heads={m.num_heads}", m.d_model)
  _check(0.0 <= m.dropout_rate < 1.0, "model.dropout_rate", "a rate in [0, 1)", m.dropout_rate)
  _, _, min_size = models.BACKBONES[m.backbone]
  _check(m.image_size >= min_size, "model.image_size",
         f"at least {min_size} pixels for backbone {m.backbone!r}", m.image_size)
  _check(not m.pretrained or m.backbone == "inception_v3", "model.pretrained",
         "'' for a backbone other than inception_v3 (the weights are InceptionV3's)",
         m.pretrained)
  _check(config.data.label_space in aus.LABEL_SPACES, "data.label_space",
         f"one of {sorted(aus.LABEL_SPACES)}", config.data.label_space)
  _check(config.train.batch_size > 0, "train.batch_size", "a positive integer",
         config.train.batch_size)
