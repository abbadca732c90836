"""BatchNorm folded into the convolutions, for inference.

In inference every backbone ConvBN computes relu(BN(conv(x, w))) with BatchNorm's running
statistics, and this model's BatchNorm has no learned scale (`use_scale=False`):

  BN(y) = (y - mean) * rsqrt(var + eps) + beta,   per output channel.

A convolution is linear in its kernel, so with s = rsqrt(var + eps) per output channel:

  BN(conv(x, w)) = conv(x, w * s) + (beta - mean * s)

exactly (in real arithmetic): w' = w * s on the kernel's output-channel axis and
b' = beta - mean * s as the conv's bias. (With a learned scale gamma, s would be
gamma * rsqrt(var + eps).) The folded model is the same MLT with `fold_bn=True` on the
backbone: every ConvBN becomes Conv(with bias) -> ReLU, parameters `conv/{kernel, bias}`, and
the variables have no `batch_stats`. The products are computed in float64 and rounded once
to the parameters' dtype; the folded probabilities match the unfolded ones to ~1e-6.

  fold_variables(variables, epsilon)   {'params', 'batch_stats'} -> {'params'} (numpy)
  folded_model(model)                  the MLT with its backbone in the folded form
  folded_predict_fn(config, dp, variables) -> (predict, folded variables): the same call
      signature as `runtime.predict_fn`'s function, on the folded model
"""

from typing import Any

import flax.linen as nn
from flax import traverse_util
import jax
import ml_collections
import numpy as np

CONV, BN = "conv", "bn"  # the submodule names of a ConvBN (models/inception_v3.py)


def _host(x) -> np.ndarray:
  """A (possibly replicated, multi-process) array as numpy."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return np.asarray(x.addressable_data(0))
  return np.asarray(x)


def fold_variables(variables: dict, epsilon: float) -> dict:
  """{'params', 'batch_stats'} of a model with ConvBN blocks -> {'params'} of its folded form.

  Every ConvBN (a module with a `conv/kernel` parameter, a `bn/bias` parameter and
  `bn/{mean, var}` statistics) becomes `conv/{kernel, bias}`; every other parameter is kept
  as it is. Statistics that belong to no ConvBN are refused: folding them would be a guess.
  """
  params = traverse_util.flatten_dict(variables["params"])
  stats = traverse_util.flatten_dict(variables.get("batch_stats", {}))
  out, used = {}, set()
  for key, value in params.items():
    if key[-2:] == (BN, "bias"):
      continue  # becomes the conv's bias, below
    if key[-2:] != (CONV, "kernel") or key[:-2] + (BN, "bias") not in params:
      out[key] = value
      continue
    block = key[:-2]
    mean_key, var_key = block + (BN, "mean"), block + (BN, "var")
    if mean_key not in stats or var_key not in stats:
      raise ValueError(f"{'/'.join(block)}: a ConvBN without BatchNorm statistics")
    kernel, beta = _host(value), _host(params[block + (BN, "bias")])
    mean, var = _host(stats[mean_key]), _host(stats[var_key])
    s = 1.0 / np.sqrt(var.astype(np.float64) + epsilon)
    out[key] = (kernel.astype(np.float64) * s).astype(kernel.dtype)  # s on the out-channel axis
    out[block + (CONV, "bias")] = (beta.astype(np.float64) - mean * s).astype(beta.dtype)
    used |= {mean_key, var_key}
  left = sorted("/".join(k) for k in set(stats) - used)
  if left:
    raise ValueError(f"BatchNorm statistics outside any ConvBN, cannot fold: {left[:5]}")
  return {"params": traverse_util.unflatten_dict(out)}


def folded_model(model: nn.Module) -> nn.Module:
  """The MLT `model` with its backbone's ConvBN blocks in the folded form (fold_bn=True)."""
  return model.clone(backbone=model.backbone.clone(fold_bn=True))


def folded_predict_fn(config: ml_collections.ConfigDict, dp, variables: dict
                      ) -> tuple[Any, dict]:
  """(predict, folded variables): `runtime.predict_fn` of the folded model, and the folded
  form of `variables` replicated on `dp`'s mesh. predict(folded, batch) is called as the
  unfolded predict(variables, batch) is."""
  from mlt_flax import runtime  # pylint: disable=g-import-not-at-top  (runtime imports models)
  model = folded_model(runtime.build_model(config))
  folded = fold_variables(variables, config.model.bn_epsilon)
  return runtime.predict_fn(config, dp, model), jax.device_put(folded, dp.replicated)
