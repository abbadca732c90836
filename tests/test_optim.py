"""Per-group learning rates against docs/recipe.md "Optimisation", frozen groups, group coverage."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import abaw3
from configs import tiny
from mlt_flax import models
from mlt_flax import optim

S = 100  # steps per epoch in these tests


def recipe_transformer_lr(s, n, batch=64, d=128, warmup_epochs=2.5):
  # lr(s) = (B n / 25000) d^-0.5 min(s^-0.5, s (2.5 S)^-1.5), s 1-based
  return batch * n / 25000 * d**-0.5 * min(s**-0.5, s * (warmup_epochs * S) ** -1.5)


@pytest.mark.parametrize("step", [1, 2, 50, 249, 250, 251, 1000, 5000])
def test_transformer_groups_follow_the_inverse_sqrt_warmup(step):
  lrs = optim.schedules(abaw3.get_config(), S, num_patches=64, num_labels=12)
  count = step - 1  # optax counts updates from 0
  np.testing.assert_allclose(lrs["patch_encoder"](count), recipe_transformer_lr(step, 64),
                             rtol=1e-5)
  np.testing.assert_allclose(lrs["label_decoder"](count), recipe_transformer_lr(step, 12),
                             rtol=1e-5)


@pytest.mark.parametrize("count,epoch", [(0, 0), (99, 0), (100, 1), (250, 2), (999, 9)])
def test_backbone_lr_is_a_per_epoch_staircase(count, epoch):
  # lr0 = 5e-5: the authors' ABAW3 grids (baseline_fwbce.json opt_var0_encoder); decay 0.99.
  lrs = optim.schedules(abaw3.get_config(), S, num_patches=64, num_labels=12)
  np.testing.assert_allclose(lrs["backbone"](count), 5e-5 * 0.99**epoch, rtol=1e-6)


@pytest.fixture(scope="module")
def params():
  config = tiny.get_config()
  model = models.build_model(config.model, num_labels=3)
  return model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))["params"]


def test_every_parameter_is_in_exactly_one_group(params):
  groups = optim.param_groups(params)
  assert set(jax.tree.leaves(groups)) == set(optim.GROUPS)
  assert jax.tree.structure(groups) == jax.tree.structure(params)
  with pytest.raises(ValueError, match="'head/kernel' matches no optimiser group"):
    optim.param_groups({"head": {"kernel": jnp.zeros(2)}})


def _one_update(params, config):
  lrs = optim.schedules(config, S, num_patches=4, num_labels=3)
  tx = optim.make_optimizer(config, lrs)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  return optax.apply_updates(params, updates)


def test_a_frozen_group_does_not_move(params):
  config = tiny.get_config()
  config.optim.frozen = ("backbone",)
  new = _one_update(params, config)
  for a, b in zip(jax.tree.leaves(params["backbone"]), jax.tree.leaves(new["backbone"])):
    np.testing.assert_array_equal(a, b)
  moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params["label_decoder"]),
                                                 jax.tree.leaves(new["label_decoder"]))]
  assert all(moved)
  config.optim.frozen = ("decoder",)
  with pytest.raises(ValueError, match="unknown groups"):
    optim.make_optimizer(config, {})


def test_first_adamw_step_moves_by_lr_plus_coupled_decay(params):
  # Adam's first step is lr * g / (|g| + eps) ~ lr; decay adds lr * 1.0 * param.
  config = tiny.get_config()
  new = _one_update(params, config)
  lr = float(optim.schedules(config, S, 4, 3)["backbone"](0))
  p = params["backbone"]["tokens"]["conv"]["kernel"]
  q = new["backbone"]["tokens"]["conv"]["kernel"]
  np.testing.assert_allclose(q, p - lr * (1.0 / (1.0 + 1e-7) + p), rtol=1e-5, atol=1e-8)


def test_gradient_clipping_is_a_config_option(params):
  config = tiny.get_config()
  config.optim.grad_clip_norm = 1e-3
  tx = optim.make_optimizer(config, optim.schedules(config, S, 4, 3))
  assert isinstance(tx, optax.GradientTransformation)
  grads = jax.tree.map(lambda p: 1e3 * jnp.ones_like(p), params)
  updates, _ = tx.update(grads, tx.init(params), params)
  assert all(np.isfinite(u).all() for u in jax.tree.leaves(updates))


def _zero_gradient_update(params, config):
  """One update with zero gradients: Adam's step is 0, so only the weight decay moves."""
  lrs = optim.schedules(config, S, num_patches=4, num_labels=3)
  tx = optim.make_optimizer(config, lrs)
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  return optax.apply_updates(params, updates), {g: float(f(0)) for g, f in lrs.items()}


SAMPLES = {  # (group, path): one parameter of each kind
    "kernel": ("patch_encoder", ("layer0_mlp", "dense_gelu", "kernel")),
    "backbone_kernel": ("backbone", ("tokens", "conv", "kernel")),
    "bias": ("patch_encoder", ("layer0_mlp", "dense_gelu", "bias")),
    "layer_norm_scale": ("label_decoder", ("layer0_mlp", "norm", "scale")),
    "position_embedding": ("patch_encoder", ("position_embedding",)),
    "label_tokens": ("label_decoder", ("label_tokens",)),
}


def _at(tree, group, path):
  node = tree[group]
  for k in path:
    node = node[k]
  return np.asarray(node)


def _randomised(params):
  """params with every leaf nonzero (biases start at 0, which decay cannot move)."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(3), len(leaves))
  return jax.tree.unflatten(treedef, [jax.random.normal(k, p.shape) for k, p in
                                      zip(keys, leaves)])


@pytest.mark.parametrize("mask", ["all", "kernels"])
def test_weight_decay_mask(params, mask):
  # Decoupled decay (optax adamw): theta <- theta - lr (adam_step + wd theta), wd = 1.0.
  # 'all' decays every parameter (the authors' tfa AdamW, no decay_var_list); 'kernels' only
  # the Dense / Conv / attention kernels.
  config = tiny.get_config()
  config.optim.weight_decay_mask = mask
  p = _randomised(params)
  new, lr = _zero_gradient_update(p, config)
  for kind, (group, path) in SAMPLES.items():
    before, after = _at(p, group, path), _at(new, group, path)
    if mask == "all" or kind.endswith("kernel"):
      np.testing.assert_allclose(after, before - lr[group] * 1.0 * before, rtol=1e-6,
                                 err_msg=kind)
      assert not np.array_equal(after, before), kind
    else:
      np.testing.assert_array_equal(after, before, err_msg=kind)


def test_kernels_mask_covers_exactly_the_kernels(params):
  mask = optim.decayed_parameters(params)
  flat = flax.traverse_util.flatten_dict(mask)
  assert {path[-1] for path, decayed in flat.items() if decayed} == {"kernel"}
  assert {path[-1] for path, decayed in flat.items() if not decayed} == {
      "bias", "scale", "position_embedding", "label_tokens"}
  config = tiny.get_config()
  config.optim.weight_decay_mask = "none"
  with pytest.raises(ValueError, match="weight_decay_mask"):
    optim.make_optimizer(config, optim.schedules(config, S, 4, 3))
