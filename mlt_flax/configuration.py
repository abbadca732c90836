"""Checks a config before anything is built: each problem names its field and what is expected.

ml_collections already refuses unknown fields and wrongly typed overrides (`--config.x=y`);
this adds the checks of meaning: names from the known sets, positive sizes, an input large
enough for the backbone, and settings that contradict each other.
"""

import math

import ml_collections

from mlt_flax import augment
from mlt_flax import aus
from mlt_flax import models
from mlt_flax.models import inception_v3
from mlt_flax.models import mlt
from mlt_flax.models import small_cnn


class ConfigError(ValueError):
  """A config field holds a value the code cannot run with."""


def _check(ok: bool, field: str, expected: str, value) -> None:
  if not ok:
    raise ConfigError(f"config.{field} = {value!r}: expected {expected}")


def _number(x) -> bool:
  """A finite int or float (a tuple field may hold anything: `--config.data.weights=abc`)."""
  return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _positive_ints(xs) -> bool:
  return all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in xs)


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
  _check(len(m.small_cnn_widths) == small_cnn.NUM_STAGES and _positive_ints(m.small_cnn_widths),
         "model.small_cnn_widths", f"{small_cnn.NUM_STAGES} positive integers",
         m.small_cnn_widths)
  for field in ("bn_epsilon", "ln_epsilon"):
    _check(_number(getattr(m, field)) and getattr(m, field) > 0, f"model.{field}",
           "a positive number", getattr(m, field))
  _check(0.0 <= m.bn_momentum < 1.0, "model.bn_momentum", "a value in [0, 1)", m.bn_momentum)
  for field in ("position_embedding_std", "label_token_std"):
    _check(_number(getattr(m, field)) and getattr(m, field) >= 0, f"model.{field}",
           "a standard deviation >= 0", getattr(m, field))
  _check(m.d_model % m.num_heads == 0, "model.d_model",
         f"a multiple of model.num_heads={m.num_heads}", m.d_model)
  _check(0.0 <= m.dropout_rate < 1.0, "model.dropout_rate", "a rate in [0, 1)", m.dropout_rate)
  _, _, min_size = models.BACKBONES[m.backbone]
  _check(m.image_size >= min_size, "model.image_size",
         f"at least {min_size} pixels for model.backbone={m.backbone!r}", m.image_size)
  _check(not m.pretrained or m.backbone == "inception_v3", "model.pretrained",
         f"'' for model.backbone={m.backbone!r} (the weights are InceptionV3's)",
         m.pretrained)
  d = config.data
  _check(d.label_space in aus.LABEL_SPACES, "data.label_space",
         f"one of {sorted(aus.LABEL_SPACES)}", d.label_space)
  datasets = sorted(set(aus.LABEL_SPACES) - {"union17"})
  _check(len(d.datasets) > 0 and all(n in datasets for n in d.datasets),
         "data.datasets", f"dataset names from {datasets}", d.datasets)
  _check(len(d.weights) == len(d.datasets) and all(_number(w) and w > 0 for w in d.weights),
         "data.weights",
         f"{len(d.datasets)} positive mixing weights, one per entry of data.datasets",
         d.weights)
  _check(len(d.train_splits) == len(d.datasets)
         and all(isinstance(s, str) and s for s in d.train_splits), "data.train_splits",
         f"{len(d.datasets)} split names, one per entry of data.datasets", d.train_splits)
  _check(d.eval_dataset in datasets, "data.eval_dataset", f"one of {datasets}",
         d.eval_dataset)
  for field in ("frame_stride", "frame_size"):
    _check(getattr(d, field) > 0, f"data.{field}", "a positive integer", getattr(d, field))
  partial = any(a not in aus.label_space(n) for n in d.datasets
                for a in aus.label_space(d.label_space))
  _check(not (config.augment.mixup and partial), "augment.mixup",
         f"False: data.label_space={d.label_space!r} has AUs that data.datasets="
         f"{list(d.datasets)} do not code (partial labels), and mixup is never used with "
         "partial labels", config.augment.mixup)
  a = config.augment
  _check(a.fill_mode in augment.FILL_MODES, "augment.fill_mode", f"one of {augment.FILL_MODES}",
         a.fill_mode)
  for field in ("brightness_delta", "channel_drop_prob", "rotation_max_turns", "zoom",
                "label_smoothing"):
    _check(0.0 <= getattr(a, field) < 1.0, f"augment.{field}", "a value in [0, 1)",
           getattr(a, field))
  _check(_number(a.mixup_alpha) and a.mixup_alpha > 0, "augment.mixup_alpha",
         "a positive Beta parameter", a.mixup_alpha)
  lo = config.loss
  _check(lo.bce or lo.dice, "loss.bce", "True, or loss.dice True: the loss needs a term", lo.bce)
  _check(_number(lo.dice_weight) and lo.dice_weight >= 0, "loss.dice_weight", "a weight >= 0",
         lo.dice_weight)
  o = config.optim
  for field in ("backbone_lr", "weight_decay", "grad_clip_norm"):
    _check(_number(getattr(o, field)) and getattr(o, field) >= 0, f"optim.{field}",
           "a number >= 0", getattr(o, field))
  # The transformer schedule divides by both: lr(s) = (B n / tokens) d^-0.5 min(.., s w^-1.5).
  for field in ("transformer_batch_tokens", "warmup_epochs", "eps"):
    _check(_number(getattr(o, field)) and getattr(o, field) > 0, f"optim.{field}",
           "a positive number", getattr(o, field))
  _check(0.0 < o.backbone_decay <= 1.0, "optim.backbone_decay", "a decay in (0, 1]",
         o.backbone_decay)
  for field in ("b1", "b2"):
    _check(0.0 <= getattr(o, field) < 1.0, f"optim.{field}", "a value in [0, 1)",
           getattr(o, field))
  groups = ("backbone", "patch_encoder", "label_decoder")
  _check(all(g in groups for g in config.optim.frozen), "optim.frozen",
         f"a subset of {groups}", config.optim.frozen)
  t = config.train
  for field in ("batch_size", "log_every_steps", "eval_every_steps", "checkpoint_every_steps"):
    _check(getattr(t, field) > 0, f"train.{field}", "a positive integer", getattr(t, field))
  _check(t.num_epochs > 0 or t.num_steps > 0, "train.num_epochs",
         "a positive number (or train.num_steps > 0)", t.num_epochs)
  for field in ("num_steps", "profile_steps"):
    _check(getattr(t, field) >= 0, f"train.{field}", "an integer >= 0", getattr(t, field))
  _check(t.on_nonfinite in ("stop", "skip"), "train.on_nonfinite", "'stop' or 'skip'",
         t.on_nonfinite)
  e = config.eval
  _check(e.batch_size > 0, "eval.batch_size", "a positive integer", e.batch_size)
  _check(0.0 < e.threshold < 1.0, "eval.threshold", "a probability in (0, 1)", e.threshold)
  _check(0.0 < e.threshold_grid_step < 1.0, "eval.threshold_grid_step", "a step in (0, 1)",
         e.threshold_grid_step)
  _check(e.smoothing_window > 0, "eval.smoothing_window", "a positive integer",
         e.smoothing_window)
  _check(len(e.smoothing_windows) > 0 and _positive_ints(e.smoothing_windows),
         "eval.smoothing_windows", "positive integers", e.smoothing_windows)
  _check(config.checkpoint.keep > 0, "checkpoint.keep", "a positive integer",
         config.checkpoint.keep)
