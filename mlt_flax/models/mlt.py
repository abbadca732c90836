"""The Multi-Label Transformer (Tallec et al., ABAW3 2022, section 3.2).

images -> backbone feature map (B, h, w, C) -> 1x1 conv to d -> + learned position embedding
-> N_x post-LN self-attention layers over the n_x = h*w patches (eq. 5-8) -> L learned label
tokens attend to each other and to the patches through N_l decoder layers (eq. 9-11) -> one
dense layer d -> 1 shared by all tokens (eq. 12) -> logits (B, L).

Parameters live under three top-level names, the optimiser's groups: `backbone`,
`patch_encoder` (1x1 conv, position embedding, self-attention stack) and `label_decoder`
(label tokens, decoder layers, head). Cross-attention weights of every decoder layer are sown
into the 'intermediates' collection; they cost nothing unless that collection is mutable.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

DECODER_LAYOUTS = ("code", "paper")


class MLPBlock(nn.Module):
  """x -> LN(x + D(MLP(x))), MLP(x) = D(W_l D(GELU(W_g x)))  (eq. 4, then eq. 8 / 11).

  Three dropouts on the MLP path: two inside the MLP (eq. 4: after GELU, after W_l) and one
  on its output before the residual sum (eq. 8 / 11), as the authors' `MLPBlock.dropout1`,
  `dropout2` and `SALayer` / `CALayer` `dropout2`. residual_dropout=False drops the third,
  leaving LN(x + D(W_l D(GELU(W_g x)))).
  """
  mlp_dim: int
  dropout_rate: float
  ln_epsilon: float
  gelu_approximate: bool
  dtype: Any
  residual_dropout: bool = True

  @nn.compact
  def __call__(self, x, train: bool):
    y = nn.Dense(self.mlp_dim, dtype=self.dtype, name="dense_gelu")(x)
    y = nn.gelu(y, approximate=self.gelu_approximate)
    y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
    y = nn.Dense(x.shape[-1], dtype=self.dtype, name="dense_out")(y)
    y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
    if self.residual_dropout:
      y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
    return nn.LayerNorm(epsilon=self.ln_epsilon, dtype=self.dtype, name="norm")(x + y)


class AttentionBlock(nn.Module):
  """q, kv -> LN(q + D(MHA(q, kv, kv)))  (eq. 7, 9, 10). Self-attention when kv is q."""
  num_heads: int
  dropout_rate: float
  ln_epsilon: float
  dtype: Any
  sow_weights: bool = False  # sow attention weights (B, heads, n_q, n_kv) in 'intermediates'

  @nn.compact
  def __call__(self, q, kv, train: bool):
    y = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, dtype=self.dtype, force_fp32_for_softmax=True,
        name="attention")(q, kv, deterministic=True, sow_weights=self.sow_weights)
    y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
    return nn.LayerNorm(epsilon=self.ln_epsilon, dtype=self.dtype, name="norm")(q + y)


class _Blocks(nn.Module):
  """Shared transformer hyper-parameters."""
  num_heads: int = 8
  mlp_dim: int = 512
  dropout_rate: float = 0.1
  ln_epsilon: float = 1e-6
  gelu_approximate: bool = False
  dtype: Any = jnp.float32
  mlp_residual_dropout: bool = True  # the third dropout of the MLP path (eq. 8 / 11)

  def attention(self, name, sow_weights=False):
    return AttentionBlock(self.num_heads, self.dropout_rate, self.ln_epsilon, self.dtype,
                          sow_weights=sow_weights, name=name)

  def mlp(self, name):
    return MLPBlock(self.mlp_dim, self.dropout_rate, self.ln_epsilon, self.gelu_approximate,
                    self.dtype, residual_dropout=self.mlp_residual_dropout, name=name)


class PatchEncoder(_Blocks):
  """(B, h, w, C) feature map -> (B, n_x = h*w, d) encoded patches."""
  d_model: int = 128
  num_layers: int = 1
  position_embedding_std: float = 0.02
  use_position_embedding: bool = True

  @nn.compact
  def __call__(self, feature_map, train: bool):
    x = nn.Conv(self.d_model, (1, 1), dtype=self.dtype, name="projection")(feature_map)
    b, h, w, d = x.shape
    x = x.reshape(b, h * w, d)
    if self.use_position_embedding:
      pos = self.param("position_embedding",
                       nn.initializers.normal(self.position_embedding_std), (h * w, d))
      x = x + pos.astype(x.dtype)
    for i in range(self.num_layers):
      x = self.attention(f"layer{i}_self_attention")(x, x, train)
      x = self.mlp(f"layer{i}_mlp")(x, train)
    return x


def cross_attention_name(layer: int) -> str:
  """The name of decoder layer `layer`'s cross-attention block (0-based)."""
  return f"layer{layer}_cross_attention"


class LabelDecoder(_Blocks):
  """(B, n_x, d) patches -> (B, L) logits, one learned token per label.

  layout 'code' (the authors' code, default): per layer, self-attention + MLP, then
  cross-attention + MLP. layout 'paper' (eq. 9-11): self-attention, cross-attention, one MLP.
  """
  num_labels: int = 12
  num_layers: int = 2
  layout: str = "code"
  label_token_std: float = 1.0

  @nn.compact
  def __call__(self, patches, train: bool):
    if self.layout not in DECODER_LAYOUTS:
      raise ValueError(f"decoder layout must be one of {DECODER_LAYOUTS}, got {self.layout!r}")
    d = patches.shape[-1]
    tokens = self.param("label_tokens", nn.initializers.normal(self.label_token_std),
                        (self.num_labels, d))
    t = jnp.broadcast_to(tokens.astype(patches.dtype), (patches.shape[0], self.num_labels, d))
    for i in range(self.num_layers):
      t = self.attention(f"layer{i}_self_attention")(t, t, train)
      if self.layout == "code":
        t = self.mlp(f"layer{i}_self_mlp")(t, train)
      t = self.attention(cross_attention_name(i), sow_weights=True)(t, patches, train)
      t = self.mlp(f"layer{i}_mlp")(t, train)
    logits = nn.Dense(1, dtype=self.dtype, name="head")(t)  # W_p shared by all tokens
    return logits[..., 0]


class MLT(nn.Module):
  """__call__(images (B, H, W, 3) in [-1, 1], train) -> logits (B, L) in float32."""
  backbone: nn.Module
  patch_encoder: PatchEncoder
  label_decoder: LabelDecoder

  def __call__(self, images, train: bool = False):
    features = self.backbone(images, train)
    patches = self.patch_encoder(features, train)
    return self.label_decoder(patches, train).astype(jnp.float32)


def cross_attention_maps(model: MLT, variables, images):
  """(logits (B, L), last decoder layer's cross-attention (B, L, n_x), mean over heads).

  images as for `MLT.__call__`. Where each label token looks among the patches: the maps
  predict draws as heatmaps.
  """
  logits, state = model.apply(variables, images, train=False, mutable=["intermediates"])
  last = cross_attention_name(model.label_decoder.num_layers - 1)
  (weights,) = state["intermediates"]["label_decoder"][last]["attention"]["attention_weights"]
  return logits, weights.mean(axis=1)
