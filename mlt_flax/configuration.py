"""Checks a config before anything is built: each problem names its field and what is expected.

ml_collections already refuses unknown fields and wrongly typed overrides (`--config.x=y`);
this adds the checks of meaning: names from the known sets, positive sizes, an input large
enough for the backbone, and settings that contradict each other.
"""

import ml_collections

from mlt_flax import augment
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
  d = config.data
  _check(d.label_space in aus.LABEL_SPACES, "data.label_space",
         f"one of {sorted(aus.LABEL_SPACES)}", d.label_space)
  _check(len(d.datasets) > 0 and all(n in aus.LABEL_SPACES for n in d.datasets),
         "data.datasets", f"dataset names from {sorted(set(aus.LABEL_SPACES) - {'union17'})}",
         d.datasets)
  _check(len(d.weights) == len(d.datasets) and all(w > 0 for w in d.weights), "data.weights",
         f"{len(d.datasets)} positive mixing weights, one per dataset", d.weights)
  for field in ("frame_stride", "frame_size"):
    _check(getattr(d, field) > 0, f"data.{field}", "a positive integer", getattr(d, field))
  partial = any(a not in aus.label_space(n) for n in d.datasets
                for a in aus.label_space(d.label_space))
  _check(not (config.augment.mixup and partial), "augment.mixup",
         f"False: label space {d.label_space!r} has AUs that {list(d.datasets)} do not code "
         "(partial labels), and mixup is never used with partial labels", config.augment.mixup)
  a = config.augment
  _check(a.fill_mode in augment.FILL_MODES, "augment.fill_mode", f"one of {augment.FILL_MODES}",
         a.fill_mode)
  for field in ("brightness_delta", "channel_drop_prob", "rotation_max_turns", "zoom",
                "label_smoothing"):
    _check(0.0 <= getattr(a, field) < 1.0, f"augment.{field}", "a value in [0, 1)",
           getattr(a, field))
  _check(a.mixup_alpha > 0, "augment.mixup_alpha", "a positive Beta parameter", a.mixup_alpha)
  lo = config.loss
  _check(lo.bce or lo.dice, "loss.bce", "True, or loss.dice True: the loss needs a term", lo.bce)
  _check(lo.dice_weight >= 0, "loss.dice_weight", "a weight >= 0", lo.dice_weight)
  groups = ("backbone", "patch_encoder", "label_decoder")
  _check(all(g in groups for g in config.optim.frozen), "optim.frozen",
         f"a subset of {groups}", config.optim.frozen)
  t = config.train
  for field in ("batch_size", "log_every_steps", "eval_every_steps", "checkpoint_every_steps"):
    _check(getattr(t, field) > 0, f"train.{field}", "a positive integer", getattr(t, field))
  _check(t.num_epochs > 0 or t.num_steps > 0, "train.num_epochs",
         "a positive number (or train.num_steps > 0)", t.num_epochs)
  _check(t.on_nonfinite in ("stop", "skip"), "train.on_nonfinite", "'stop' or 'skip'",
         t.on_nonfinite)
  _check(config.checkpoint.keep > 0, "checkpoint.keep", "a positive integer",
         config.checkpoint.keep)
