"""FLOPs of the model, the machine's matmul peak, and the utilisation of one against the other.

  jaxpr_flops   2 x multiply-adds of every convolution and dot in a jaxpr (the count we trust)
  xla_flops     XLA's own cost_analysis of a compiled computation (the count we check it with)
  model_flops   forward and training FLOPs per image of the model, from its jaxprs
  *_matmul_peak the best FLOP/s of an n x n x n matmul (jnp.dot, numpy)
  mfu           model FLOP utilisation: FLOPs per image x images/s / peak FLOP/s

JAX is imported inside the functions: the benchmark's parent process imports this module and
must not pick XLA_FLAGS for its workers by initialising JAX itself.
"""

import numpy as np

from benchmarks import timing

TRAIN_FLOPS_FACTOR = 3  # the rule of thumb: backward = 2 x forward


def _valid_taps(in_size: int, out_size: int, window: int, stride: int, pad_lo: int,
                lhs_dilation: int, rhs_dilation: int) -> int:
  """(output position, window tap) pairs of one spatial dim that land on a real input element.

  Padding and the holes of an lhs dilation (how JAX transposes a strided convolution) hold
  zeros: multiplying them is not work of the model.
  """
  last = (in_size - 1) * lhs_dilation  # the last real element, in dilated coordinates
  count = 0
  for o in range(out_size):
    for k in range(window):
      pos = o * stride + k * rhs_dilation - pad_lo
      count += 0 <= pos <= last and pos % lhs_dilation == 0
  return count


def _conv_flops(eqn, count_padding: bool) -> int:
  """2 x multiply-adds of one conv_general_dilated equation."""
  p = eqn.params
  lhs, rhs, out = eqn.invars[0].aval, eqn.invars[1].aval, eqn.outvars[0].aval
  dn = p["dimension_numbers"]  # specs: (batch or out-feature, feature or in-feature, spatial..)
  taps = 1
  for i in range(len(dn.rhs_spec) - 2):
    in_size, out_size = lhs.shape[dn.lhs_spec[2 + i]], out.shape[dn.out_spec[2 + i]]
    window = rhs.shape[dn.rhs_spec[2 + i]]
    if count_padding:
      taps *= out_size * window
    else:
      taps *= _valid_taps(in_size, out_size, window, p["window_strides"][i],
                          p["padding"][i][0], p["lhs_dilation"][i], p["rhs_dilation"][i])
  per_tap = out.shape[dn.out_spec[0]] * out.shape[dn.out_spec[1]] * rhs.shape[dn.rhs_spec[1]]
  return 2 * per_tap * taps


def _dot_flops(eqn) -> int:
  """2 x multiply-adds of one dot_general equation: output elements x contracted size."""
  lhs, out = eqn.invars[0].aval, eqn.outvars[0].aval
  (contracting, _), _ = eqn.params["dimension_numbers"]
  return 2 * int(np.prod(out.shape)) * int(np.prod([lhs.shape[d] for d in contracting]))


def jaxpr_flops(closed_jaxpr, count_padding: bool = False) -> int:
  """2 x multiply-adds of every convolution and dot_general in a jaxpr (sub-jaxprs too).

  count_padding: also count the taps that fall on a convolution's zero padding (the usual
  way to quote a CNN's FLOPs, e.g. 11.4 GFLOP for InceptionV3 at 299); by default only taps
  on real input elements count (XLA's cost_analysis does the same).
  """
  from jax.extend import core as jex_core  # pylint: disable=g-import-not-at-top

  def count(jaxpr) -> int:
    total = 0
    for eqn in jaxpr.eqns:
      name = eqn.primitive.name
      if name == "conv_general_dilated":
        total += _conv_flops(eqn, count_padding)
      elif name == "dot_general":
        total += _dot_flops(eqn)
      subs = [item.jaxpr if isinstance(item, jex_core.ClosedJaxpr) else item
              for v in eqn.params.values()
              for item in (v if isinstance(v, (tuple, list)) else (v,))
              if isinstance(item, (jex_core.ClosedJaxpr, jex_core.Jaxpr))]
      if subs:  # a cond runs one branch: count the costliest; a call runs its body once
        total += max(count(s) for s in subs) * int(eqn.params.get("length", 1))
    return total

  return count(closed_jaxpr.jaxpr)


def xla_flops(compiled) -> float:
  """XLA's own FLOP count of a compiled computation (NaN if the backend gives none)."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return float("nan")
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  return float((analysis or {}).get("flops", float("nan")))


def model_flops(model, loss_config, num_labels: int, image_size: int) -> dict:
  """Forward and training FLOPs per image of a Flax MLT model, from its jaxprs at batch 1.

  model: the model as models.build_model makes it (no mapped BatchNorm axis); training is
  the gradient of the MLT loss (losses.mlt_loss under `loss_config`) w.r.t. the parameters.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from mlt_flax import losses  # pylint: disable=g-import-not-at-top
  x = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(x.shape), False))
  forward = jax.make_jaxpr(lambda v, im: model.apply(v, im, train=False))(variables, x)

  def loss(params, stats, im, y):
    logits, _ = model.apply({"params": params, "batch_stats": stats}, im, train=True,
                            rngs={"dropout": jax.random.key(0)}, mutable=["batch_stats"])
    return losses.mlt_loss(logits, y, jnp.ones_like(y), jnp.ones(num_labels), loss_config)[0]

  y = jax.ShapeDtypeStruct((1, num_labels), jnp.float32)
  grad = jax.make_jaxpr(jax.grad(loss))(variables["params"], variables["batch_stats"], x, y)
  return {"flops_forward": jaxpr_flops(forward),
          "flops_forward_with_padding": jaxpr_flops(forward, count_padding=True),
          "flops_train": jaxpr_flops(grad)}


def jax_matmul_peak(dtype: str, size: int, repeats: int) -> float:
  """Best FLOP/s of a jitted jnp.dot (size x size) @ (size x size) in `dtype`."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32).astype(dtype)
  dot = jax.jit(jnp.dot)
  return timing.matmul_peak(lambda: dot(a, a).block_until_ready(), size, repeats)


def numpy_matmul_peak(size: int, repeats: int) -> float:
  """Best FLOP/s of numpy's float32 (size x size) @ (size x size): the reference peak."""
  a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
  return timing.matmul_peak(lambda: a @ a, size, repeats)


def mfu(flops_per_image: float, images_per_s: float, peak_flops_per_s: float) -> float:
  """Model FLOP utilisation: the share of the peak that the model's own FLOPs run at."""
  return flops_per_image * images_per_s / peak_flops_per_s
