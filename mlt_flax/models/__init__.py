"""Model construction from config: the MLT head (or the reference's pooled head) on a backbone.

`build_model(model_config, num_labels)` is the one place a config becomes a module. Backbones
are a plain dict from config name to (constructor, output-size function, minimum input).
model_config.head is 'mlt' (the paper's model) or 'pooled' (global average pool, dropout, one
dense layer: the plain-CNN reference of configs/plain_cnn.py, models/plain_cnn.py).
"""

import jax.numpy as jnp
import ml_collections
import numpy as np

from mlt_flax import assets
from mlt_flax.models import inception_v3
from mlt_flax.models import mlt
from mlt_flax.models import plain_cnn
from mlt_flax.models import small_cnn
from mlt_flax.models import torchscript_import

BACKBONES = {
    # name: (build(model_config, bn_axis_name, dtype), output_size(pixels), min input pixels)
    "inception_v3": (
        lambda c, axis, dtype: inception_v3.InceptionV3(
            variant=c.inception_variant, bn_momentum=c.bn_momentum, bn_epsilon=c.bn_epsilon,
            bn_axis_name=axis, dtype=dtype),
        inception_v3.output_size, inception_v3.MIN_SIZE),
    "small_cnn": (
        lambda c, axis, dtype: small_cnn.SmallCNN(
            widths=tuple(c.small_cnn_widths), features=c.small_cnn_features,
            bn_momentum=c.bn_momentum, bn_epsilon=c.bn_epsilon, bn_axis_name=axis, dtype=dtype),
        small_cnn.output_size, small_cnn.MIN_SIZE),
    "plain_cnn": (
        lambda c, axis, dtype: plain_cnn.PlainCNN(
            widths=tuple(c.plain_cnn_widths), bn_momentum=c.bn_momentum,
            bn_epsilon=c.bn_epsilon, bn_axis_name=axis, dtype=dtype),
        plain_cnn.output_size, plain_cnn.MIN_SIZE),
}
HEADS = ("mlt", "pooled")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def num_patches(model_config: ml_collections.ConfigDict) -> int:
  """n_x, the number of patch tokens the backbone gives at the configured image size."""
  _, out_size, _ = BACKBONES[model_config.backbone]
  return out_size(model_config.image_size) ** 2


def build_model(model_config: ml_collections.ConfigDict, num_labels: int,
                bn_axis_name: str | None = None):
  """The MLT of `model_config` with `num_labels` label tokens (L comes from the dataset), or
  with model_config.head = 'pooled' the backbone under a pooled dense classifier.

  bn_axis_name: the mapped device axis over which BatchNorm averages batch statistics in
  training (None outside a mapped context).
  """
  build_backbone, _, _ = BACKBONES[model_config.backbone]
  dtype = DTYPES[model_config.dtype]
  if model_config.head == "pooled":
    return plain_cnn.PooledClassifier(
        backbone=build_backbone(model_config, bn_axis_name, dtype), num_labels=num_labels,
        dropout_rate=model_config.head_dropout, dtype=dtype)
  blocks = dict(num_heads=model_config.num_heads, mlp_dim=model_config.mlp_dim,
                dropout_rate=model_config.dropout_rate, ln_epsilon=model_config.ln_epsilon,
                gelu_approximate=model_config.gelu_approximate, dtype=dtype,
                mlp_residual_dropout=model_config.mlp_residual_dropout)
  return mlt.MLT(
      backbone=build_backbone(model_config, bn_axis_name, dtype),
      patch_encoder=mlt.PatchEncoder(
          d_model=model_config.d_model, num_layers=model_config.num_encoder_layers,
          position_embedding_std=model_config.position_embedding_std,
          use_position_embedding=model_config.use_position_embedding, **blocks),
      label_decoder=mlt.LabelDecoder(
          num_labels=num_labels, num_layers=model_config.num_decoder_layers,
          layout=model_config.decoder_layout, label_token_std=model_config.label_token_std,
          **blocks),
  )


def load_pretrained_backbone(variables, model_config: ml_collections.ConfigDict):
  """Returns `variables` with the backbone replaced by the configured pretrained weights.

  model_config.pretrained: '' (keep the random init) or an asset name (see mlt_flax/assets.py)
  holding the FID InceptionV3 archive. Shapes are checked against the model's own backbone.
  """
  if not model_config.pretrained:
    return variables
  if model_config.backbone != "inception_v3":
    raise ValueError(f"config.model.pretrained={model_config.pretrained!r} holds InceptionV3 "
                     f"weights but config.model.backbone={model_config.backbone!r}")
  expected = {c: variables[c]["backbone"] for c in ("params", "batch_stats")}
  imported = torchscript_import.load_inception_v3(
      assets.path(model_config.pretrained), expected=expected)
  out = dict(variables)
  for c in ("params", "batch_stats"):
    out[c] = dict(variables[c])
    out[c]["backbone"] = _like(imported[c], expected[c])
  return out


def _like(src, ref):
  """Nested numpy arrays `src` cast to the dtypes of the same-structured `ref`."""
  if isinstance(src, dict):
    return {k: _like(v, ref[k]) for k, v in src.items()}
  return np.asarray(src, dtype=ref.dtype)
