"""predict's JAX backend: a run's checkpoint, one compiled function over the local devices.

Imports JAX, and through mlt_flax.runtime the input pipeline (TensorFlow): predict loads
this module only for --workdir (mlt_flax.predict.backends.OnnxBackend serves --model).
"""

import jax
import numpy as np

from mlt_flax import augment
from mlt_flax import reports
from mlt_flax import runtime
from mlt_flax.models import mlt
from mlt_flax.predict import backends
from mlt_flax.predict import outputs

class JaxBackend(backends.Backend):
  """A run's checkpoint, ready for batch inference on this process's devices."""

  def __init__(self, workdir, checkpoint: str = "best", *, run: runtime.Run | None = None):
    """Restores the checkpoint (or takes `run`, e.g. a model with fresh weights) and builds
    the one compiled predict function (a fixed batch shape, sharded over the devices)."""
    self.dp = runtime.DataParallel(jax.local_devices())
    self.run_ = run or runtime.load_run(workdir, checkpoint, self.dp)
    self.config, self.step, self.variables = (self.run_.config, self.run_.step,
                                              self.run_.variables)
    self.au_names = self.run_.au_names
    self.batch_size = self.dp.local_batch_size(self.config.eval.batch_size,
                                               "eval.batch_size")
    self.frame_size = self.config.data.frame_size
    if workdir is not None:
      self.shipped, path = reports.read_shipped(workdir)
      self.shipped_where = str(path)
      if self.shipped is not None and int(self.shipped["checkpoint_step"]) != self.step:
        # Thresholds tuned on another checkpoint's outputs were never scored on this one's.
        self.shipped_where = (f"{path} (its set was tuned for checkpoint step "
                              f"{self.shipped['checkpoint_step']}, not this step {self.step})")
        self.shipped = None
    model = runtime.build_model(self.config)
    self.predict = runtime.predict_fn(self.config, self.dp, model)
    image_size = self.config.model.image_size

    @jax.jit
    def attention(variables, images_uint8):
      logits, weights = mlt.cross_attention_maps(
          model, variables, augment.preprocess(images_uint8, image_size))
      return jax.nn.sigmoid(logits), weights

    self._attention = attention

  def infer(self, batches):
    """The device computes a batch while the host fetches the previous one (runtime.infer)."""
    sized = ({"image": images, "n": np.asarray(n)} for images, n in batches)
    for batch, p in runtime.infer(self.predict, self.variables, sized, self.dp):
      yield p[:int(batch["n"])]

  def attention_maps(self, crops: dict) -> dict:
    if not crops:
      return {}
    keys = sorted(crops)
    probs, weights = self._attention(self.variables, np.stack([crops[k] for k in keys]))
    side = int(round(weights.shape[-1] ** 0.5))
    weights = np.asarray(weights).reshape(len(keys), len(self.au_names), side, side)
    return {k: (np.asarray(probs[i]), weights[i]) for i, k in enumerate(keys)}

  def split_predictions(self, split: str) -> list[outputs.VideoPrediction]:
    # Every labelled frame of the split, at full frame rate, faceless ones included (marked):
    # the frames a challenge submission has a line for.
    p = runtime.predict_split(self.run_, split, self.dp, predict=self.predict, frame_stride=1,
                              faceless=True)
    streams = []
    for v in np.unique(p["video"].astype(str)):
      rows = p["video"].astype(str) == v
      probs = np.where(p["face"][rows, None], p["probs"][rows], np.nan).astype(np.float32)
      streams.append(outputs.VideoPrediction.one_face(v, p["frame"][rows], p["face"][rows],
                                                      probs))
    return streams
