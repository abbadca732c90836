"""The optimiser: one optax chain, AdamW with a schedule per parameter group.

docs/recipe.md, "Optimisation", gives the formulas and the source of each number.

Groups are chosen by path rules, first match wins, and every parameter must match one:
  backbone       lr0 * decay^epoch, a staircase updated once per epoch (with the pooled
                 head of the plain-CNN reference, its dense classifier too: one group);
  patch_encoder  the inverse-sqrt warm-up schedule with n = n_x (patch tokens);
  label_decoder  the same schedule with n = L (labels).
Weight decay follows the learning rate: optax's adamw multiplies its weight_decay by the
scheduled lr, so weight_decay = 1.0 gives a decay coefficient equal to the lr itself, as in
the authors' optimizer. config.optim.weight_decay_mask says which parameters are decayed:
'all' (the authors': their tfa AdamW has no decay_var_list) or 'kernels' (only the kernels of
Dense, Conv and attention projections; biases, LayerNorm / BatchNorm parameters, the position
embedding and the label tokens are not decayed). A group named in config.optim.frozen gets
zero updates.
"""

import re
from typing import Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

GROUP_RULES = (  # (regex over the '/'-joined parameter path, group); first match wins
    (r"^backbone/", "backbone"),
    (r"^classifier/", "backbone"),  # the pooled head's dense layer (models/plain_cnn.py)
    (r"^patch_encoder/", "patch_encoder"),
    (r"^label_decoder/", "label_decoder"),
)
GROUPS = tuple(dict.fromkeys(g for _, g in GROUP_RULES))
WEIGHT_DECAY_MASKS = ("all", "kernels")
KERNEL_NAME = "kernel"  # the leaf name of every Dense / Conv / attention projection matrix


def param_groups(params) -> dict:
  """The group of every parameter, as a tree shaped like params. Raises if one matches none."""
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params), sep="/")
  labels = {}
  for path in flat:
    group = next((g for rule, g in GROUP_RULES if re.search(rule, path)), None)
    if group is None:
      raise ValueError(f"parameter {path!r} matches no optimiser group rule {GROUP_RULES}")
    labels[path] = group
  return flax.traverse_util.unflatten_dict(labels, sep="/")


def _is_kernel(path, _) -> bool:
  return getattr(path[-1], "key", None) == KERNEL_NAME


def decayed_parameters(params):
  """True for each parameter the 'kernels' mask decays (its leaf name is 'kernel').

  A tree shaped like params; works on the partial trees optax.partition hands each group.
  """
  return jax.tree_util.tree_map_with_path(_is_kernel, params)


def inverse_sqrt_warmup(batch_size: int, num_tokens: int, d_model: int, warmup_steps: float,
                        batch_tokens: float) -> Callable:
  """lr(s) = (B n / batch_tokens) d^-0.5 min(s^-0.5, s w^-1.5), s = 1-based step.

  optax passes the 0-based count of updates done, so s = count + 1.
  """
  scale = batch_size * num_tokens / batch_tokens * d_model**-0.5

  def schedule(count):
    s = jnp.asarray(count, jnp.float32) + 1.0
    return scale * jnp.minimum(s**-0.5, s * warmup_steps**-1.5)

  return schedule


def schedules(config: ml_collections.ConfigDict, steps_per_epoch: int, num_patches: int,
              num_labels: int) -> dict[str, Callable]:
  """The learning-rate schedule of each group, count (0-based) -> lr."""
  o = config.optim
  warmup = o.warmup_epochs * steps_per_epoch
  common = dict(batch_size=config.train.batch_size, d_model=config.model.d_model,
                warmup_steps=warmup, batch_tokens=o.transformer_batch_tokens)
  return {
      "backbone": optax.exponential_decay(o.backbone_lr, transition_steps=steps_per_epoch,
                                          decay_rate=o.backbone_decay, staircase=True),
      "patch_encoder": inverse_sqrt_warmup(num_tokens=num_patches, **common),
      "label_decoder": inverse_sqrt_warmup(num_tokens=num_labels, **common),
  }


def make_optimizer(config: ml_collections.ConfigDict, lr_schedules: dict[str, Callable],
                   ) -> optax.GradientTransformation:
  """AdamW per group (frozen groups: zero updates), after optional global-norm clipping."""
  o = config.optim
  unknown = set(o.frozen) - set(GROUPS)
  if unknown:
    raise ValueError(f"config.optim.frozen names unknown groups {sorted(unknown)}; "
                     f"expected some of {GROUPS}")
  if o.weight_decay_mask not in WEIGHT_DECAY_MASKS:
    raise ValueError(f"config.optim.weight_decay_mask = {o.weight_decay_mask!r}; expected one "
                     f"of {WEIGHT_DECAY_MASKS}")
  mask = decayed_parameters if o.weight_decay_mask == "kernels" else None
  transforms = {
      g: optax.set_to_zero() if g in o.frozen else optax.adamw(
          lr_schedules[g], b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay,
          mask=mask)
      for g in GROUPS}
  tx = optax.partition(transforms, param_groups)
  if o.grad_clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(o.grad_clip_norm), tx)
  return tx


def learning_rates(lr_schedules: dict[str, Callable], step) -> dict[str, jax.Array]:
  """Each group's learning rate at update count `step`, for logging."""
  return {f"lr/{g}": jnp.asarray(fn(step), jnp.float32) for g, fn in lr_schedules.items()}
