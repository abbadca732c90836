"""The plain-CNN reference: a textbook conv net, trained and scored by the MLT's own pipeline."""

import jax
import jax.numpy as jnp
import numpy as np

from configs import demo
from configs import plain_cnn as plain_cnn_config
from mlt_flax import augment
from mlt_flax import configuration
from mlt_flax import models
from mlt_flax import optim
from mlt_flax import runtime
from mlt_flax import train
from mlt_flax.models import plain_cnn

NUM_LABELS = 12


def test_four_blocks_of_two_convs_halve_the_frame_four_times_then_pool_to_logits():
  config = plain_cnn_config.get_config()
  config.model.plain_cnn_widths = (32, 64, 128, 128)  # the textbook widths
  model = models.build_model(config.model, NUM_LABELS)
  images = jnp.zeros((2, 112, 112, 3))
  variables = jax.jit(model.init)(jax.random.key(0), images)
  features = model.backbone.apply({k: v["backbone"] for k, v in variables.items()}, images)
  assert features.shape == (2, 7, 7, 128)  # 112 / 2^4, the last block's channels
  assert model.apply(variables, images).shape == (2, NUM_LABELS)
  convs = [k for k in variables["params"]["backbone"]]
  assert len(convs) == 2 * plain_cnn.NUM_BLOCKS
  # 3x3 convs 3->32->32, 32->64->64, 64->128->128, 128->128->128 (each with a BatchNorm
  # offset, no scale), then a 128 -> L dense layer.
  widths = [(3, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128), (128, 128),
            (128, 128)]
  assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"])) == (
      sum(9 * i * o + o for i, o in widths) + 128 * NUM_LABELS + NUM_LABELS)


def test_the_whole_reference_trains_as_one_group_at_adams_default_rate():
  config = plain_cnn_config.get_config()
  model = models.build_model(config.model, NUM_LABELS)
  params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 112, 112, 3)))["params"]
  assert set(jax.tree.leaves(optim.param_groups(params))) == {"backbone"}
  _, lr_fns, _ = runtime.build(config, steps_per_epoch=10)
  for count in (0, 10, 1000):
    assert float(lr_fns["backbone"](count)) == np.float32(1e-3)


def test_the_reference_recipe_is_the_textbook_one_on_the_given_configs_data():
  base = demo.get_config()
  base.data.data_dir, base.train.eval_every_steps = "/elsewhere/tfds", 123
  ref = configuration.plain_cnn_reference(base, num_steps=7)
  configuration.validate(ref)
  assert (ref.model.backbone, ref.model.head, ref.model.pretrained) == ("plain_cnn", "pooled", "")
  assert ref.model.plain_cnn_widths == (16, 32, 64, 64) and ref.model.head_dropout == 0.2
  assert ref.model.image_size == 64  # frames resized on device, as the MLT's are
  a = ref.augment
  assert not (a.mixup or a.hflip or a.brightness_delta or a.channel_drop_prob
              or a.rotation_max_turns or a.zoom or a.label_smoothing)
  assert a.translate == 0.1
  assert ref.loss.bce and not ref.loss.dice and not ref.loss.frequency_weights
  assert (ref.optim.backbone_lr, ref.optim.backbone_decay, ref.optim.weight_decay) == (
      1e-3, 1.0, 0.0)
  assert (ref.train.batch_size, ref.train.num_steps) == (32, 7)
  # Same frames, same scoring: the data and the evaluation are the given config's.
  assert ref.data.to_dict() == base.data.to_dict() and ref.eval.to_dict() == base.eval.to_dict()
  assert ref.train.eval_every_steps == 123


def test_the_reference_sees_as_many_frames_as_the_run_it_is_the_reference_of():
  base = demo.get_config()
  base.train.num_steps, base.train.batch_size = 900, 64
  assert configuration.plain_cnn_reference(base).train.num_steps == 1800  # at batch 32
  base.train.num_steps, base.train.num_epochs = 0, 7
  ref = configuration.plain_cnn_reference(base)
  assert (ref.train.num_steps, ref.train.num_epochs) == (0, 7)
  assert base.model.head == "mlt"  # the given config is left as it was


def test_a_reference_train_step_lowers_the_loss_and_logs_no_transformer_rate():
  config = configuration.plain_cnn_reference(demo.get_config())
  config.model.plain_cnn_widths = (8, 8, 16, 16)
  dp = runtime.DataParallel(jax.devices()[:1])
  model, lr_fns, tx = runtime.build(config, steps_per_epoch=10)
  state = jax.jit(lambda: runtime.create_train_state(0, model, tx, 112),
                  out_shardings=dp.replicated)()
  step = train.make_train_step(config, dp, model=model, tx=tx, lr_fns=lr_fns,
                               weights=np.ones(NUM_LABELS), allow_mixup=False)
  rng = np.random.default_rng(0)
  batch = dp.to_global({"image": rng.integers(0, 256, (16, 112, 112, 3), dtype=np.uint8),
                        "labels": rng.integers(0, 2, (16, NUM_LABELS)).astype(np.float32)})
  losses = []
  for _ in range(8):
    state, metrics, finite = step(state, batch)
    assert bool(finite)
    m = metrics.compute()
    losses.append(float(m["loss"]))
  assert losses[-1] < losses[0]
  assert float(m["lr_backbone"]) == np.float32(1e-3)
  assert float(m["lr_patch_encoder"]) == float(m["lr_label_decoder"]) == 0.0  # no such groups


def test_a_shift_moves_the_content_by_whole_pixels():
  images = jnp.asarray(np.random.default_rng(0).random((1, 16, 16, 1)), jnp.float32)
  no = jnp.zeros((1,))
  out = augment.warp(images, no.astype(bool), no, jnp.ones((1,)), 16,
                     shift=jnp.asarray([[2.0, -3.0]]))  # 2 down, 3 left
  np.testing.assert_allclose(out[0, 2:, :-3], images[0, :-2, 3:], atol=1e-6)
