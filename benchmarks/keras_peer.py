"""An independent tf.keras MLT, the peer the Flax model's speed is measured against.

  python -m benchmarks.keras_peer [--policy=float32|mixed_bfloat16] [--image_size=299]
      [--backbone=inception_v3|small_cnn] [--train_batch=16] [--infer_batch=32]
      [--warmup=1] [--timed_steps=3] [--matmul_size=4096] [--matmul_repeats=5]
      [--out=result.json]

The same architecture as mlt_flax (configs/abaw3.py), written only from Keras layers:
keras.applications.InceptionV3(include_top=False, weights=None) -> 1x1 Conv2D 2048 -> d
-> + learned position embedding -> N_x post-LN encoder layers (MultiHeadAttention, MLP GELU)
-> L learned label tokens through N_l decoder layers (self-attention + MLP, then
cross-attention + MLP, post-LN, the authors' 'code' layout) -> one Dense(1) shared by all
tokens. As in the Flax model, dropout acts on each block's output (not on attention weights).
The small_cnn backbone (mlt_flax/models/small_cnn.py, rebuilt here from Conv2D and
BatchNormalization) only serves the benchmark's --quick mode, which must compile in seconds.
Trained with AdamW on a plain BCE-with-logits loss: the Flax loss adds a Dice term and
frequency weights, a few element-wise operations on (B, L) logits that cost nothing next to
the network.

Run as a module it times one training step (`train_on_batch`) and one inference call
(`predict_on_batch`) on synthetic float inputs already at the model's size (the Flax steps
start from uint8 112x112 frames and resize on the device), and writes a JSON dict.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: quiet logs

from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position
import keras  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

from benchmarks import cli  # pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import timing  # pylint: disable=g-import-not-at-top,wrong-import-position
from configs import abaw3  # pylint: disable=g-import-not-at-top,wrong-import-position

POLICIES = ("float32", "mixed_bfloat16")
BACKBONES = ("inception_v3", "small_cnn")
NUM_LABELS = 12  # ABAW3's AUs
LEARNING_RATE = 1e-4  # any value: only the speed of the update is measured
MATMUL_SIZE = 4096  # n of the n x n x n matmul that measures the machine's peak
MATMUL_REPEATS = 5  # the best of this many matmuls is the peak
SMALL_CNN_FINAL_KERNEL = 7  # as mlt_flax/models/small_cnn.py


class PositionEmbedding(keras.layers.Layer):
  """(B, n, d) -> (B, n, d) + a learned (n, d) table, initialised N(0, std)."""

  def __init__(self, std, **kwargs):
    super().__init__(**kwargs)
    self.std = std

  def build(self, input_shape):
    self.table = self.add_weight(
        shape=tuple(input_shape[1:]), name="position_embedding",
        initializer=keras.initializers.RandomNormal(stddev=self.std))

  def call(self, x):
    return x + keras.ops.cast(self.table, x.dtype)


class LabelTokens(keras.layers.Layer):
  """(B, n, d) patches -> (B, L, d): L learned tokens, the same for every sample."""

  def __init__(self, num_labels, std, **kwargs):
    super().__init__(**kwargs)
    self.num_labels = num_labels
    self.std = std

  def build(self, input_shape):
    self.tokens = self.add_weight(
        shape=(self.num_labels, input_shape[-1]), name="label_tokens",
        initializer=keras.initializers.RandomNormal(stddev=self.std))

  def call(self, patches):
    batch = keras.ops.shape(patches)[0]
    tokens = keras.ops.cast(self.tokens, patches.dtype)
    return keras.ops.broadcast_to(tokens[None], (batch, self.num_labels, tokens.shape[-1]))


def _attention(q, kv, m, name):
  """LN(q + Dropout(MHA(q, kv)))."""
  y = keras.layers.MultiHeadAttention(m.num_heads, m.d_model // m.num_heads,
                                      name=f"{name}_mha")(q, kv)
  y = keras.layers.Dropout(m.dropout_rate)(y)
  return keras.layers.LayerNormalization(epsilon=m.ln_epsilon, name=f"{name}_ln")(q + y)


def _mlp(x, m, name):
  """LN(x + D(D(W_l D(GELU(W_g x))))): eq. 4's two dropouts, and eq. 8/11's before the sum
  when model.mlp_residual_dropout (as the Flax model)."""
  y = keras.layers.Dense(m.mlp_dim, name=f"{name}_gelu")(x)
  y = keras.layers.Activation("gelu")(y)  # exact erf GELU, as the Flax config
  y = keras.layers.Dropout(m.dropout_rate)(y)
  y = keras.layers.Dense(m.d_model, name=f"{name}_out")(y)
  y = keras.layers.Dropout(m.dropout_rate)(y)
  if m.mlp_residual_dropout:
    y = keras.layers.Dropout(m.dropout_rate)(y)
  return keras.layers.LayerNormalization(epsilon=m.ln_epsilon, name=f"{name}_ln")(x + y)


def _conv_bn(x, features, kernel, strides, padding, m, name):
  """Conv (no bias) -> BatchNorm (no scale) -> ReLU, the Keras InceptionV3 convention."""
  x = keras.layers.Conv2D(features, kernel, strides, padding, use_bias=False,
                          name=f"{name}_conv")(x)
  x = keras.layers.BatchNormalization(momentum=m.bn_momentum, epsilon=m.bn_epsilon,
                                      scale=False, name=f"{name}_bn")(x)
  return keras.layers.Activation("relu")(x)


def _small_cnn(images, m):
  """mlt_flax's SmallCNN: stride-2 stages of two 3x3 ConvBN, then a 7x7 'valid' ConvBN."""
  x = images
  for i, width in enumerate(m.small_cnn_widths):
    x = _conv_bn(x, width, 3, 2, "same", m, f"stage{i}_down")
    x = _conv_bn(x, width, 3, 1, "same", m, f"stage{i}_conv")
  return _conv_bn(x, m.small_cnn_features, SMALL_CNN_FINAL_KERNEL, 1, "valid", m, "tokens")


def build_model(image_size: int, num_labels: int = NUM_LABELS, model_config=None,
                backbone: str = "inception_v3") -> keras.Model:
  """images (B, S, S, 3) in [-1, 1] -> logits (B, num_labels) float32.

  model_config: the mlt_flax model config (configs/abaw3.py `model` by default): d, heads,
  MLP width, dropout, LayerNorm epsilon, layer counts and init scales come from it.
  """
  if backbone not in BACKBONES:
    raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
  m = model_config or abaw3.get_config().model
  images = keras.Input((image_size, image_size, 3))
  if backbone == "inception_v3":
    trunk = keras.applications.InceptionV3(include_top=False, weights=None,
                                           input_shape=(image_size, image_size, 3))
    features = trunk(images)
  else:
    features = _small_cnn(images, m)
  x = keras.layers.Conv2D(m.d_model, 1, name="projection")(features)
  x = keras.layers.Reshape((-1, m.d_model))(x)
  if m.use_position_embedding:
    x = PositionEmbedding(m.position_embedding_std, name="position_embedding")(x)
  for i in range(m.num_encoder_layers):
    x = _attention(x, x, m, f"encoder{i}_sa")
    x = _mlp(x, m, f"encoder{i}_mlp")
  t = LabelTokens(num_labels, m.label_token_std, name="label_tokens")(x)
  for i in range(m.num_decoder_layers):
    t = _attention(t, t, m, f"decoder{i}_sa")
    t = _mlp(t, m, f"decoder{i}_self_mlp")
    t = _attention(t, x, m, f"decoder{i}_ca")
    t = _mlp(t, m, f"decoder{i}_mlp")
  logits = keras.layers.Dense(1, dtype="float32", name="head")(t)  # float32 under bf16 too
  logits = keras.layers.Reshape((num_labels,), dtype="float32")(logits)
  return keras.Model(images, logits, name="mlt_keras")


def count_params(model: keras.Model) -> int:
  """All weights, trainable or not (BatchNorm moving statistics included, as in Flax)."""
  return int(sum(np.prod(w.shape) for w in model.weights))


def matmul_peak(dtype: str, size: int = MATMUL_SIZE, repeats: int = MATMUL_REPEATS) -> float:
  """Best FLOP/s of tf.matmul (size x size) @ (size x size) in `dtype`."""
  a = tf.cast(tf.random.normal((size, size), dtype=tf.float32), dtype)
  matmul = tf.function(tf.linalg.matmul)
  return timing.matmul_peak(lambda: matmul(a, a).numpy(), size, repeats)


def benchmark(policy: str, image_size: int, backbone: str, train_batch: int, infer_batch: int,
              warmup: int, timed_steps: int, matmul_size: int, matmul_repeats: int) -> dict:
  """Builds the peer under `policy` and times a training step and an inference call."""
  if policy not in POLICIES:
    raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
  keras.mixed_precision.set_global_policy(policy)
  model = build_model(image_size, backbone=backbone)
  model.compile(optimizer=keras.optimizers.AdamW(LEARNING_RATE),
                loss=keras.losses.BinaryCrossentropy(from_logits=True))
  rng = np.random.default_rng(0)
  x_train = rng.uniform(-1, 1, (train_batch, image_size, image_size, 3)).astype(np.float32)
  y_train = rng.integers(0, 2, (train_batch, NUM_LABELS)).astype(np.float32)
  x_infer = rng.uniform(-1, 1, (infer_batch, image_size, image_size, 3)).astype(np.float32)
  train_first, train_s = timing.median_times(lambda: model.train_on_batch(x_train, y_train),
                                             warmup, timed_steps)
  infer_first, infer_s = timing.median_times(lambda: model.predict_on_batch(x_infer),
                                             warmup, timed_steps)
  compute_dtype = "bfloat16" if policy == "mixed_bfloat16" else "float32"
  return {
      "policy": policy, "backbone": backbone, "image_size": image_size,
      "params": count_params(model),
      "jit_compile": bool(model.jit_compile),
      "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
      "train_batch": train_batch, "train_step_s": train_s,
      "train_images_per_s": train_batch / train_s, "train_first_call_s": train_first,
      "infer_batch": infer_batch, "infer_s": infer_s,
      "infer_images_per_s": infer_batch / infer_s, "infer_first_call_s": infer_first,
      "matmul_dtype": compute_dtype,
      "matmul_flops_per_s": matmul_peak(compute_dtype, matmul_size, matmul_repeats),
      "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
  }


def _define_flags() -> None:
  flags.DEFINE_enum("policy", "float32", POLICIES, "Keras mixed-precision policy.")
  flags.DEFINE_integer("image_size", 299, "Model input, pixels.")
  flags.DEFINE_enum("backbone", "inception_v3", BACKBONES, "The backbone to build.")
  flags.DEFINE_integer("train_batch", 16, "Training batch.")
  flags.DEFINE_integer("infer_batch", 32, "Inference batch.")
  flags.DEFINE_integer("warmup", 1, "Untimed calls after the first.")
  flags.DEFINE_integer("timed_steps", 3, "Timed calls; the median is reported.")
  flags.DEFINE_integer("matmul_size", MATMUL_SIZE, "n of the n x n x n peak matmul.")
  flags.DEFINE_integer("matmul_repeats", MATMUL_REPEATS, "The peak is the best of this many.")
  flags.DEFINE_string("out", "", "Write the JSON result here (else to stdout).")


def main() -> None:
  f = flags.FLAGS
  result = benchmark(f.policy, f.image_size, f.backbone, f.train_batch, f.infer_batch,
                     f.warmup, f.timed_steps, f.matmul_size, f.matmul_repeats)
  if f.out:
    cli.write_json(f.out, result)
  else:
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
  cli.run(_define_flags, main)
