"""The Multi-Label Transformer, checked against the paper's equations and docs/recipe.md."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import abaw3
from configs import tiny
from mlt_flax import models
from mlt_flax.models import mlt


def init_shapes(config, num_labels, size=None):
  model = models.build_model(config.model, num_labels)
  size = size or config.model.image_size
  x = jnp.zeros((2, size, size, 3))
  return jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), x, train=False))


def count(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("backbone,size,n_x", [
    ("inception_v3", 299, 64), ("inception_v3", 150, 9), ("small_cnn", 112, 64),
    ("small_cnn", 64, 4), ("small_cnn", 200, 361)])
def test_output_shapes_and_patch_count(backbone, size, n_x):
  config = abaw3.get_config()
  config.model.backbone = backbone
  config.model.image_size = size
  logits, variables = init_shapes(config, num_labels=12)
  assert logits.shape == (2, 12) and logits.dtype == jnp.float32
  assert variables["params"]["patch_encoder"]["position_embedding"].shape == (n_x, 128)
  assert models.num_patches(config.model) == n_x  # n_x = 64 at 299 (the paper's 8x8)


def test_number_of_labels_comes_from_the_caller():
  config = tiny.get_config()
  for num_labels in (12, 17):
    logits, variables = init_shapes(config, num_labels)
    assert logits.shape == (2, num_labels)
    assert variables["params"]["label_decoder"]["label_tokens"].shape == (num_labels, 16)


def test_parameter_counts_of_the_paper_model():
  _, v = init_shapes(abaw3.get_config(), num_labels=12)
  d, mlp, n_x, labels, c = 128, 512, 64, 12, 2048
  attention_block = 4 * (d * d + d) + 2 * d  # Q, K, V, O dense layers + LayerNorm
  mlp_block = (d * mlp + mlp) + (mlp * d + d) + 2 * d  # W_g, W_l + LayerNorm
  patch_encoder = (c * d + d) + n_x * d + attention_block + mlp_block  # N_x = 1
  label_decoder = labels * d + 2 * (2 * attention_block + 2 * mlp_block) + (d + 1)  # N_l = 2
  assert count(v["params"]["patch_encoder"]) == patch_encoder == 468_736
  assert count(v["params"]["label_decoder"]) == label_decoder == 794_753
  assert count(v["params"]["backbone"]) + count(v["batch_stats"]) == 21_802_784
  assert set(v["params"]) == {"backbone", "patch_encoder", "label_decoder"}  # the 3 groups


def test_paper_decoder_layout_has_one_mlp_per_layer():
  config = abaw3.get_config()
  config.model.decoder_layout = "paper"
  _, v = init_shapes(config, num_labels=12)
  layer0 = {k for k in v["params"]["label_decoder"] if k.startswith("layer0")}
  assert layer0 == {"layer0_self_attention", "layer0_cross_attention", "layer0_mlp"}
  config.model.decoder_layout = "code"
  _, v = init_shapes(config, num_labels=12)
  assert "layer0_self_mlp" in v["params"]["label_decoder"]


@pytest.fixture(scope="module")
def tiny_model():
  config = tiny.get_config()
  model = models.build_model(config.model, num_labels=5)
  x = jax.random.uniform(jax.random.key(1), (3, 64, 64, 3), minval=-1, maxval=1)
  variables = model.init(jax.random.key(0), x, train=False)
  return model, variables, x


def test_permuting_label_tokens_permutes_the_outputs(tiny_model):
  model, variables, x = tiny_model
  perm = np.array([3, 0, 4, 1, 2])
  permuted = jax.tree.map(lambda a: a, variables)
  tokens = variables["params"]["label_decoder"]["label_tokens"]
  permuted["params"]["label_decoder"]["label_tokens"] = tokens[perm]
  out = model.apply(variables, x, train=False)
  out_perm = model.apply(permuted, x, train=False)
  np.testing.assert_allclose(out_perm, out[:, perm], rtol=1e-5, atol=1e-5)


def test_without_position_embedding_patches_are_permutation_equivariant():
  encoder = mlt.PatchEncoder(d_model=16, num_heads=2, mlp_dim=32, use_position_embedding=False)
  fmap = jax.random.normal(jax.random.key(0), (2, 3, 3, 8))
  v = encoder.init(jax.random.key(1), fmap, train=False)
  perm = np.random.default_rng(0).permutation(9)
  shuffled = fmap.reshape(2, 9, 8)[:, perm].reshape(2, 3, 3, 8)
  out, out_shuffled = encoder.apply(v, fmap, train=False), encoder.apply(v, shuffled, train=False)
  np.testing.assert_allclose(out_shuffled, out[:, perm], rtol=1e-5, atol=1e-5)
  # ... and the label decoder is invariant to the order of the patches it attends to.
  decoder = mlt.LabelDecoder(num_labels=4, num_heads=2, mlp_dim=32)
  dv = decoder.init(jax.random.key(2), out, train=False)
  np.testing.assert_allclose(decoder.apply(dv, out[:, perm], train=False),
                             decoder.apply(dv, out, train=False), rtol=1e-5, atol=1e-5)


def test_eval_is_deterministic_and_dropout_acts_only_in_training(tiny_model):
  model, variables, x = tiny_model
  np.testing.assert_array_equal(model.apply(variables, x, train=False),
                                model.apply(variables, x, train=False))

  def train_out(seed):
    out, _ = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(seed)},
                         mutable=["batch_stats"])
    return out

  np.testing.assert_array_equal(train_out(0), train_out(0))
  assert not np.allclose(train_out(0), train_out(1))
  no_dropout = tiny.get_config()
  no_dropout.model.dropout_rate = 0.0
  m0 = models.build_model(no_dropout.model, num_labels=5)
  a, _ = m0.apply(variables, x, train=True, rngs={"dropout": jax.random.key(0)},
                  mutable=["batch_stats"])
  b, _ = m0.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)},
                  mutable=["batch_stats"])
  np.testing.assert_array_equal(a, b)  # the only randomness in training is dropout


def test_cross_attention_maps_are_retrievable_only_when_asked(tiny_model):
  model, variables, x = tiny_model
  out, state = model.apply(variables, x, train=False, mutable=["intermediates"])
  inter = state["intermediates"]["label_decoder"]
  (weights,) = inter["layer0_cross_attention"]["attention"]["attention_weights"]
  assert weights.shape == (3, 2, 5, 4)  # (B, heads, L, n_x)
  np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)  # a softmax over patches
  assert "layer0_self_attention" not in inter  # only cross-attention is sown
  np.testing.assert_array_equal(out, model.apply(variables, x, train=False))


def test_bfloat16_compute_keeps_float32_params_and_outputs(tiny_model):
  _, variables, x = tiny_model
  config = tiny.get_config()
  config.model.dtype = "bfloat16"
  model = models.build_model(config.model, num_labels=5)
  v16 = model.init(jax.random.key(0), x, train=False)
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(v16["params"]))
  out16 = model.apply(variables, x, train=False)
  out32 = models.build_model(tiny.get_config().model, 5).apply(variables, x, train=False)
  assert out16.dtype == jnp.float32
  np.testing.assert_allclose(out16, out32, atol=0.1)  # bf16 keeps ~3 significant digits


def dropout_sites(model, variables, x):
  """Every module call of one training forward pass, as (block path, module class, rate).

  Returns {block path: [(class name, dropout rate or None), ...]} in call order, for every
  MLPBlock and AttentionBlock of the model: where each block's dropouts sit among its layers.
  """
  calls = []

  def record(next_fun, args, kwargs, context):
    if context.method_name == "__call__":
      m = context.module
      calls.append((m.scope.path, type(m).__name__,
                    m.rate if isinstance(m, nn.Dropout) else None,
                    m.deterministic if isinstance(m, nn.Dropout) else None))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(0)},
                mutable=["batch_stats"])
  blocks = {path for path, cls, _, _ in calls if cls in ("MLPBlock", "AttentionBlock")}
  sites = {b: [] for b in blocks}
  for path, cls, rate, deterministic in calls:
    if path[:-1] in blocks:  # a layer directly inside a block
      assert deterministic in (None, False)  # every dropout acts in training
      sites[path[:-1]].append((cls, rate))
  return sites


# eq. 4: Q_mlp = D(GELU(Q W_g)), MLP(Q) = D(Q_mlp W_l); eq. 8: X = LN[X~ + D(MLP(X~))] (and
# eq. 11 for the tokens): three dropouts on the MLP path; the authors' MLPBlock.dropout1,
# dropout2 and SALayer / CALayer dropout2.
MLP_PATH_WITH_RESIDUAL_DROPOUT = [("Dense", None), ("Dropout", 0.1), ("Dense", None),
                                  ("Dropout", 0.1), ("Dropout", 0.1), ("LayerNorm", None)]
MLP_PATH_EQ4_ONLY = [("Dense", None), ("Dropout", 0.1), ("Dense", None), ("Dropout", 0.1),
                     ("LayerNorm", None)]
# eq. 7 / 9 / 10: LN(Q + D(MHA(Q, K, V))): one dropout, none on the attention weights.
ATTENTION_PATH = [("MultiHeadDotProductAttention", None), ("Dropout", 0.1),
                  ("LayerNorm", None)]


@pytest.mark.parametrize("layout,residual_dropout", [
    ("code", True), ("code", False), ("paper", True)])
def test_dropout_sites_of_every_block(layout, residual_dropout):
  config = tiny.get_config()
  config.model.num_decoder_layers = 2
  config.model.decoder_layout = layout
  config.model.mlp_residual_dropout = residual_dropout
  model = models.build_model(config.model, num_labels=3)
  x = jnp.zeros((2, 64, 64, 3))
  variables = model.init(jax.random.key(0), x, train=False)
  sites = dropout_sites(model, variables, x)
  mlps = {p: s for p, s in sites.items() if p[-1].endswith("mlp")}
  attentions = {p: s for p, s in sites.items() if p[-1].endswith("attention")}
  # N_x = 1 encoder MLP; N_l = 2 decoder layers with 2 MLPs ('code') or 1 ('paper').
  assert len(mlps) == 1 + 2 * (2 if layout == "code" else 1)
  assert len(attentions) == 1 + 2 * 2
  expected = MLP_PATH_WITH_RESIDUAL_DROPOUT if residual_dropout else MLP_PATH_EQ4_ONLY
  for path, s in mlps.items():
    assert s == expected, path
  for path, s in attentions.items():
    assert s == ATTENTION_PATH, path


def test_the_residual_dropout_is_the_only_difference_the_switch_makes():
  x = jax.random.normal(jax.random.key(0), (4, 6, 16))
  on = mlt.MLPBlock(32, 0.5, 1e-6, False, jnp.float32, residual_dropout=True)
  off = mlt.MLPBlock(32, 0.5, 1e-6, False, jnp.float32, residual_dropout=False)
  v = on.init(jax.random.key(1), x, train=False)
  rngs = {"dropout": jax.random.key(2)}
  np.testing.assert_array_equal(on.apply(v, x, train=False), off.apply(v, x, train=False))
  assert not np.allclose(on.apply(v, x, train=True, rngs=rngs),
                         off.apply(v, x, train=True, rngs=rngs))

  def skip_third_dropout(next_fun, args, kwargs, context):
    if isinstance(context.module, nn.Dropout) and context.module.name == "Dropout_2":
      return args[0]  # the residual dropout as identity: what is left is the 'off' block
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(skip_third_dropout):
    without_third = on.apply(v, x, train=True, rngs=rngs)
  np.testing.assert_allclose(without_third, off.apply(v, x, train=True, rngs=rngs),
                             rtol=1e-6, atol=1e-6)
