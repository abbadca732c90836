"""BatchNorm folded into the convolutions: the same probabilities, no BatchNorm left."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from export_fixtures import TOLERANCE, demo_model, face_crops, paper_model, random_frames
from export_fixtures import realistic_batch_stats
from mlt_flax import runtime
from mlt_flax.models import fold
from mlt_flax.models import inception_v3


def max_diff(config, variables, images, dp):
  """max |p_folded - p_unfolded| over `images`, each through its predict function."""
  batch = dp.to_global({"image": images})
  unfolded = np.asarray(runtime.predict_fn(config, dp)(variables, batch))
  predict, folded = fold.folded_predict_fn(config, dp, variables)
  got = np.asarray(predict(folded, batch))
  assert got.shape == unfolded.shape == (len(images), len(runtime.au_names(config)))
  return float(np.abs(got - unfolded).max()), folded


def test_the_algebra_on_one_convbn():
  block = inception_v3.ConvBN(8, (3, 3), bn_epsilon=1e-3)
  x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 9, 9, 4)), jnp.float32)
  v = realistic_batch_stats(block.init(jax.random.key(0), x, train=False))
  folded = fold.fold_variables(v, 1e-3)
  s = 1 / np.sqrt(np.float64(v["batch_stats"]["bn"]["var"]) + 1e-3)
  np.testing.assert_allclose(folded["params"]["conv"]["kernel"],
                             v["params"]["conv"]["kernel"] * s, rtol=1e-6)
  np.testing.assert_allclose(folded["params"]["conv"]["bias"],
                             v["params"]["bn"]["bias"] - v["batch_stats"]["bn"]["mean"] * s,
                             rtol=1e-6, atol=1e-7)
  assert set(folded) == {"params"} and set(folded["params"]) == {"conv"}
  got = block.clone(fold_bn=True).apply(folded, x, train=False)
  np.testing.assert_allclose(got, block.apply(v, x, train=False), atol=1e-5)
  with pytest.raises(ValueError, match="for inference"):
    block.clone(fold_bn=True).apply(folded, x, train=True)


def test_demo_model_folded_equals_unfolded():
  config, v = demo_model()
  dp = runtime.DataParallel(jax.devices()[:2])  # folded variables replicated over a mesh
  images = np.concatenate([face_crops()[:2], random_frames(2)])
  diff, folded = max_diff(config, v, images, dp)
  print(f"demo model: folded vs unfolded max |dp| = {diff:.2e}")
  assert diff <= TOLERANCE
  # The folded variables are exactly what the folded model takes: no batch_stats left.
  model = runtime.build_model(config)
  want = jax.eval_shape(lambda: fold.folded_model(model).init(
      jax.random.key(0), jnp.zeros((1, 112, 112, 3)), train=False))
  assert jax.tree.structure(want) == jax.tree.structure(folded)
  assert jax.tree.map(lambda a: a.shape, want) == jax.tree.map(lambda a: a.shape, folded)


@pytest.mark.slow  # InceptionV3 at 299 compiled twice (folded and not) on CPU
def test_paper_model_folded_equals_unfolded():
  config, v = paper_model()
  dp = runtime.DataParallel(jax.devices()[:1])
  images = np.concatenate([face_crops()[:3], random_frames(1)])
  diff, _ = max_diff(config, v, images, dp)
  print(f"paper model (InceptionV3 at 299, ImageNet trunk): folded vs unfolded max |dp| = "
        f"{diff:.2e}")
  assert diff <= TOLERANCE


def test_statistics_outside_a_convbn_are_refused():
  v = {"params": {"dense": {"kernel": np.ones((2, 2))}},
       "batch_stats": {"norm": {"mean": np.zeros(2), "var": np.ones(2)}}}
  with pytest.raises(ValueError, match="outside any ConvBN"):
    fold.fold_variables(v, 1e-3)
