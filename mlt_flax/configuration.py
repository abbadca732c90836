"""The config schema with its defaults, and the checks a config passes before anything is built.

`defaults()` holds every field, each with its default and a one-line comment; docs/recipe.md
gives the source of each number. `validate` names the field and what is expected for each
problem.

ml_collections already refuses unknown fields and wrongly typed overrides (`--config.x=y`);
this adds the checks of meaning: names from the known sets, positive sizes, an input large
enough for the backbone, and settings that contradict each other.
"""

import json
import math
from typing import Any

import ml_collections

from mlt_flax import augment
from mlt_flax import aus
from mlt_flax import models
from mlt_flax import optim
from mlt_flax.models import inception_v3
from mlt_flax.models import mlt
from mlt_flax.models import plain_cnn
from mlt_flax.models import small_cnn


def defaults() -> ml_collections.ConfigDict:
  """Every field of a config with its default: the paper's fine-tuning run on Aff-Wild2.

  configs/abaw3.py is this; other configs start from it and override a few fields. A run
  stored before a field existed gets the field's default here when it is loaded.
  """
  config = ml_collections.ConfigDict()
  config.seed = 0  # PRNG seed for initialisation, dropout and the data stream

  # Model (docs/recipe.md "Model").
  m = config.model = ml_collections.ConfigDict()
  m.backbone = "inception_v3"  # 'inception_v3' (the paper), 'small_cnn' (fast CPU runs), 'plain_cnn'
  m.head = "mlt"  # 'mlt' (the paper's transformer) or 'pooled' (the plain-CNN reference's head)
  m.head_dropout = 0.2  # pooled head: dropout before its dense layer
  m.plain_cnn_widths = (32, 64, 128, 128)  # plain_cnn: channels of its four blocks
  m.inception_variant = "tf2015"  # 'tf2015' (max pool in Mixed_7c's pool branch) or 'keras'
  m.pretrained = "inception_v3_fid.pt"  # asset holding ImageNet backbone weights; '' = random
  m.image_size = 299  # input height = width in pixels
  m.small_cnn_widths = (32, 64, 128)  # small_cnn: channels of its three stride-2 stages
  m.small_cnn_features = 256  # small_cnn: channels of its output feature map
  m.bn_momentum = 0.99  # BatchNorm running-average momentum (Keras default)
  m.bn_epsilon = 1e-3  # BatchNorm epsilon (Keras/TF convention); BN has no learned scale
  m.d_model = 128  # d: width of patch and label tokens (the 1x1 conv's output channels)
  m.num_heads = 8  # N_h: attention heads in every attention layer
  m.mlp_dim = 512  # hidden width of every MLP block (GELU)
  m.dropout_rate = 0.1  # dropout after attention, inside and after every MLP
  m.mlp_residual_dropout = True  # also drop the MLP output before LN(x + .); False: eq. 4's 2 only
  m.num_encoder_layers = 1  # N_x: self-attention layers over patches
  m.num_decoder_layers = 2  # N_l: label-token decoder layers
  m.decoder_layout = "code"  # 'code': SA+MLP then CA+MLP per layer; 'paper': SA, CA, MLP
  m.ln_epsilon = 1e-6  # LayerNorm epsilon (post-LN)
  m.gelu_approximate = False  # exact erf GELU, as Keras
  m.position_embedding_std = 0.02  # patch position embedding init N(0, 0.02)
  m.use_position_embedding = True  # add the learned position embedding to patch tokens
  m.label_token_std = 1.0  # label token init N(0, 1)
  m.dtype = "float32"  # compute dtype: 'float32' or 'bfloat16' (params stay float32)

  # Data (docs/recipe.md "Data and augmentation").
  d = config.data = ml_collections.ConfigDict()
  d.datasets = ("abaw3_au",)  # TFDS datasets mixed for training
  d.weights = (1.0,)  # mixing weight of each dataset
  d.label_space = "abaw3_au"  # label space of the model: a dataset's own AUs or 'union17'
  d.train_splits = ("train",)  # the split trained on, one per dataset (TFDS split syntax)
  d.eval_dataset = "abaw3_au"  # the dataset evaluated on
  d.eval_split = "validation"  # its split evaluated on
  d.data_dir = "data/tfds"  # where the TFDS datasets are built
  d.frame_stride = 5  # every 5th frame of each video in training and in-training evaluation
  d.frame_size = 112  # frames travel to the devices as uint8 at this size (Aff-Wild2's own)
  # Every epoch is reshuffled: file order, then a buffer of this many (encoded) frames per
  # dataset; 0 = the whole epoch, a uniform permutation each epoch (the authors' reshuffle).
  d.shuffle_buffer = 0

  # Augmentation, applied in this order (docs/recipe.md "Data and augmentation").
  a = config.augment = ml_collections.ConfigDict()
  a.mixup = True  # mixup (never with partial labels)
  a.mixup_alpha = 0.4  # lambda ~ Beta(0.4, 0.4) per sample
  a.hflip = True  # random horizontal flip
  a.brightness_delta = 0.1  # add U(-0.1, 0.1) in [0, 1] pixel space, then clip
  a.channel_drop_prob = 0.3  # each channel zeroed with this probability (0.1 in pretraining)
  a.rotation_max_turns = 0.1  # rotation up to +-0.1 of a full turn (+-36 degrees)
  a.zoom = 0.1  # zoom +-10%
  a.translate = 0.0  # shift up to +-this fraction of the side, each axis (the recipe: none)
  a.fill_mode = "reflect"  # corners uncovered by rotation/zoom: 'reflect' (Keras), 'nearest', 'constant'
  a.label_smoothing = 0.1  # y * (1 - s) + s / 2, i.e. y * 0.9 + 0.05

  # Loss (docs/recipe.md "Loss").
  lo = config.loss = ml_collections.ConfigDict()
  lo.bce = True  # binary cross-entropy term
  lo.frequency_weights = True  # weight each AU by w_t = T (1/f_t) / sum_k (1/f_k)
  lo.dice = True  # per-sample, per-AU weighted Dice term
  lo.dice_weight = 0.5  # lambda: total = BCE + lambda * Dice

  # Optimisation (docs/recipe.md "Optimisation"): AdamW with three parameter groups.
  o = config.optim = ml_collections.ConfigDict()
  o.backbone_lr = 5e-5  # lr0 * decay^epoch, staircase; authors' ABAW3 grids (paper's text: 5e-4)
  o.backbone_decay = 0.99  # per-epoch decay of the backbone learning rate
  o.transformer_batch_tokens = 25000.0  # lr(s) = (B n / this) d^-0.5 min(s^-0.5, s w^-1.5)
  o.warmup_epochs = 2.5  # w = warm-up of the transformer groups, in epochs
  o.b1 = 0.9  # Adam beta1
  o.b2 = 0.999  # Adam beta2
  o.eps = 1e-7  # Adam epsilon (Keras default)
  o.weight_decay = 1.0  # decay coefficient = the scheduled lr itself (authors' optimizer)
  o.weight_decay_mask = "all"  # decayed: 'all' (authors') or 'kernels' (Dense/Conv kernels only)
  o.grad_clip_norm = 0.0  # clip gradients to this global norm; 0 = off
  o.frozen = ()  # parameter groups not trained: any of backbone, patch_encoder, label_decoder

  # Training.
  t = config.train = ml_collections.ConfigDict()
  t.batch_size = 64  # global batch, over all devices of all processes
  t.num_epochs = 10  # epochs over the (strided) training frames
  t.num_steps = 0  # if > 0, train this many steps instead of num_epochs
  t.log_every_steps = 100  # training metrics are averaged and written this often
  t.eval_every_steps = 2000  # full validation-split evaluation this often, and at the end
  t.checkpoint_every_steps = 2000  # checkpoint this often, at the end, and on SIGTERM
  t.on_nonfinite = "stop"  # NaN/Inf loss or gradient: 'stop', or 'skip' the update and count it
  t.eval_at_start = False  # also evaluate the untrained model before the first step
  # Stop after this many evaluations in a row without a better validation mean F1; 0 = never.
  t.early_stopping_patience = 0
  t.profile_steps = 0  # if > 0, profile this many steps (TensorBoard trace in the workdir)

  # Checkpoints (Orbax), in <workdir>/checkpoints.
  ck = config.checkpoint = ml_collections.ConfigDict()
  ck.keep = 3  # keep the last 3 checkpoints, plus the best by validation mean F1
  ck.async_save = True  # write checkpoints in the background while training goes on
  config.init_from = ""  # another run's workdir or checkpoint to start from (pretrain -> fine-tune)
  config.init_from_checkpoint = "best"  # which of its checkpoints: 'best', 'latest' or a step

  # Evaluation (docs/recipe.md "Evaluation (ABAW3 AU track)").
  e = config.eval = ml_collections.ConfigDict()
  e.batch_size = 64  # global batch of evaluation and prediction
  e.threshold = 0.5  # fixed decision threshold
  e.smoothing_window = 20  # w_s: centred moving mean of probabilities inside each video
  e.threshold_grid_step = 0.005  # per-AU threshold tuning grid
  e.smoothing_windows = (5, 10, 15, 20, 25)  # windows tried when tuning (authors: 5-25)
  # `evaluate --protocol=paper`, the authors' figure (src/abaw3_utils.py, __main__): their
  # threshold grid np.linspace(0, 1, 200) and windows, tuned on the reported split.
  e.paper_num_thresholds = 200
  e.paper_windows = (5, 10, 15, 20, 25)
  # If > 0, every evaluation also scores every N-th frame of the evaluation dataset's training
  # split (no augmentation), for the learning curves; 0 = off (Aff-Wild2's is ~1.3M frames).
  e.train_f1_stride = 0

  # The demo (`main --mode=demo`, `--mode=photo_demo`): synthetic data and real faces.
  de = config.demo = ml_collections.ConfigDict()
  de.photos = ("single_face.jpg", "0-f1-su-ph.jpg", "15-f13-anc-ph.jpg")  # photo_demo assets
  de.dataset = "synthetic"  # 'synthetic' (AU face videos) or 'digits' (the second benchmark)
  de.synthetic_dir = "data/synthetic/abaw3_au"  # where the demo's dataset is generated
  de.synthetic_seed = 0  # seed of the synthetic videos
  de.num_workers = 2  # processes rendering synthetic videos
  de.num_train_videos = 0  # synthetic training videos; 0 = the generator's default (24)
  de.num_val_videos = 0  # synthetic validation videos; 0 = the generator's default (8)
  de.num_test_videos = 0  # test videos (a split nothing selects on); 0 = the generator's default
  de.frames_per_video = 0  # mean frames per synthetic video; 0 = the generator's default
  de.video = "WolfgangLanger_Pexels.mp4"  # the real face video predict runs on (an asset)
  de.video_heatmap_frames = (100, 300)  # its frames drawn with attention heatmaps
  de.synthetic_video = ""  # a synthetic validation video predict runs on; '' = the first
  de.synthetic_heatmap_frames = (30, 120)  # its frames drawn with attention heatmaps
  de.reference = True  # also train the plain-CNN reference (`plain_cnn_reference`) and print it
  de.reference_steps = 0  # its training steps; 0 = as many frames as the MLT's run
  return config


DEMO_DATASETS = ("synthetic", "digits")
# The plain-CNN reference, sized for a 2-core CPU: the textbook net's four blocks at a quarter
# of its (32, 64, 128, 128) channels, on frames resized to 64x64, at batch 32. Trained as long,
# in frames seen, as the config it is the reference of.
REFERENCE_WIDTHS = (16, 32, 64, 64)
REFERENCE_IMAGE_SIZE = 64
REFERENCE_BATCH = 32


def plain_cnn_reference(config: ml_collections.ConfigDict,
                        num_steps: int = 0) -> ml_collections.ConfigDict:
  """The plain-CNN reference on `config`'s data: a textbook conv net, textbook recipe.

  Four blocks of two 3x3 conv + BatchNorm + ReLU (REFERENCE_WIDTHS channels) with 2x2 max
  pooling, global average pooling, dropout 0.2 and one sigmoid dense layer (models/
  plain_cnn.py) at REFERENCE_IMAGE_SIZE; Adam at 1e-3 with no decay, plain binary cross-
  entropy (no AU weights, no Dice, no label smoothing), small random translations only, at
  batch REFERENCE_BATCH for as many frames as `config` trains on (num_steps > 0: that many
  steps instead). Data, pipeline, evaluation and checkpoint cadence are `config`'s, so both
  are scored on the same frames.
  """
  ref = ml_collections.ConfigDict(config.to_dict())
  m = ref.model
  m.backbone, m.head, m.pretrained = "plain_cnn", "pooled", ""
  m.plain_cnn_widths, m.head_dropout = REFERENCE_WIDTHS, 0.2
  m.image_size = REFERENCE_IMAGE_SIZE
  a = ref.augment
  a.mixup, a.hflip = False, False
  a.brightness_delta = a.channel_drop_prob = a.rotation_max_turns = a.zoom = 0.0
  a.label_smoothing = 0.0
  a.translate = 0.1  # +-10% of the side, each axis (Keras RandomTranslation(0.1, 0.1))
  ref.loss.frequency_weights, ref.loss.dice, ref.loss.bce = False, False, True
  o = ref.optim
  o.backbone_lr, o.backbone_decay, o.weight_decay = 1e-3, 1.0, 0.0  # Adam's default, constant
  o.grad_clip_norm, o.frozen = 0.0, ()
  t = ref.train
  if not num_steps and t.num_steps:  # the same frames seen as `config`'s run
    num_steps = max(round(t.num_steps * t.batch_size / REFERENCE_BATCH), 1)
  t.batch_size, t.num_steps = REFERENCE_BATCH, num_steps
  t.early_stopping_patience, t.eval_at_start = 0, False
  ref.init_from = ""
  return ref


# Fields a run may change when it resumes: they neither shape the train state nor change the
# recipe it trains by (how long, how often it logs, evaluates or checkpoints, how it is
# evaluated, where the data lives). Any other difference from the saved config refuses the
# resume (`resume_changes`, `checkpoints.check_resumable`).
RESUMABLE_FIELDS = (
    "train.num_steps", "train.num_epochs", "train.log_every_steps", "train.eval_every_steps",
    "train.checkpoint_every_steps", "train.profile_steps", "train.early_stopping_patience",
    "train.on_nonfinite", "train.eval_at_start", "checkpoint.keep", "checkpoint.async_save",
    "data.data_dir", "eval.", "demo.",
)


def flatten(tree: dict, prefix: str = "") -> dict:
  """{'model.d_model': 16, ...}: a config's to_dict() as one level of dotted field names."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def resume_changes(saved: dict, current: dict) -> list[tuple[str, Any, Any]]:
  """(field, saved value, this run's value) for each field that differs and is not one of
  RESUMABLE_FIELDS; both configs as to_dict(). A field the saved config lacks (added to the
  project since) holds its library default, as `runtime.load_config` reads it."""
  normal = lambda d: flatten(json.loads(json.dumps(d, default=float)))
  old, new = {**normal(defaults().to_dict()), **normal(saved)}, normal(current)
  resumable = lambda f: any(f == r or (r.endswith(".") and f.startswith(r))
                            for r in RESUMABLE_FIELDS)
  return [(f, old.get(f, "<absent>"), new.get(f, "<absent>"))
          for f in sorted(set(old) | set(new))
          if not resumable(f) and old.get(f, "<absent>") != new.get(f, "<absent>")]


class ConfigError(ValueError):
  """A config field holds a value the code cannot run with."""


def _check(ok: bool, field: str, expected: str, value) -> None:
  if not ok:
    raise ConfigError(f"config.{field} = {value!r}: expected {expected}")


def _number(x) -> bool:
  """A finite int or float (a tuple field may hold anything: `--config.data.weights=abc`)."""
  return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _positive_ints(xs) -> bool:
  return all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in xs)


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first offending field."""
  m = config.model
  _check(m.backbone in models.BACKBONES, "model.backbone",
         f"one of {sorted(models.BACKBONES)}", m.backbone)
  _check(m.inception_variant in inception_v3.VARIANTS, "model.inception_variant",
         f"one of {inception_v3.VARIANTS}", m.inception_variant)
  _check(m.decoder_layout in mlt.DECODER_LAYOUTS, "model.decoder_layout",
         f"one of {mlt.DECODER_LAYOUTS}", m.decoder_layout)
  _check(m.dtype in models.DTYPES, "model.dtype", f"one of {sorted(models.DTYPES)}", m.dtype)
  for field in ("image_size", "d_model", "num_heads", "mlp_dim", "num_decoder_layers",
                "small_cnn_features"):
    _check(getattr(m, field) > 0, f"model.{field}", "a positive integer", getattr(m, field))
  _check(m.num_encoder_layers >= 0, "model.num_encoder_layers", "an integer >= 0",
         m.num_encoder_layers)
  _check(m.head in models.HEADS, "model.head", f"one of {models.HEADS}", m.head)
  _check(0.0 <= m.head_dropout < 1.0, "model.head_dropout", "a rate in [0, 1)", m.head_dropout)
  _check(len(m.plain_cnn_widths) == plain_cnn.NUM_BLOCKS and _positive_ints(m.plain_cnn_widths),
         "model.plain_cnn_widths", f"{plain_cnn.NUM_BLOCKS} positive integers",
         m.plain_cnn_widths)
  _check(len(m.small_cnn_widths) == small_cnn.NUM_STAGES and _positive_ints(m.small_cnn_widths),
         "model.small_cnn_widths", f"{small_cnn.NUM_STAGES} positive integers",
         m.small_cnn_widths)
  for field in ("bn_epsilon", "ln_epsilon"):
    _check(_number(getattr(m, field)) and getattr(m, field) > 0, f"model.{field}",
           "a positive number", getattr(m, field))
  _check(0.0 <= m.bn_momentum < 1.0, "model.bn_momentum", "a value in [0, 1)", m.bn_momentum)
  for field in ("position_embedding_std", "label_token_std"):
    _check(_number(getattr(m, field)) and getattr(m, field) >= 0, f"model.{field}",
           "a standard deviation >= 0", getattr(m, field))
  _check(m.d_model % m.num_heads == 0, "model.d_model",
         f"a multiple of model.num_heads={m.num_heads}", m.d_model)
  _check(0.0 <= m.dropout_rate < 1.0, "model.dropout_rate", "a rate in [0, 1)", m.dropout_rate)
  _, _, min_size = models.BACKBONES[m.backbone]
  _check(m.image_size >= min_size, "model.image_size",
         f"at least {min_size} pixels for model.backbone={m.backbone!r}", m.image_size)
  _check(not m.pretrained or m.backbone == "inception_v3", "model.pretrained",
         f"'' for model.backbone={m.backbone!r} (the weights are InceptionV3's)",
         m.pretrained)
  d = config.data
  _check(d.label_space in aus.LABEL_SPACES, "data.label_space",
         f"one of {sorted(aus.LABEL_SPACES)}", d.label_space)
  datasets = sorted(set(aus.LABEL_SPACES) - {"union17"})
  _check(len(d.datasets) > 0 and all(n in datasets for n in d.datasets),
         "data.datasets", f"dataset names from {datasets}", d.datasets)
  _check(len(d.weights) == len(d.datasets) and all(_number(w) and w > 0 for w in d.weights),
         "data.weights",
         f"{len(d.datasets)} positive mixing weights, one per entry of data.datasets",
         d.weights)
  _check(len(d.train_splits) == len(d.datasets)
         and all(isinstance(s, str) and s for s in d.train_splits), "data.train_splits",
         f"{len(d.datasets)} split names, one per entry of data.datasets", d.train_splits)
  _check(d.eval_dataset in datasets, "data.eval_dataset", f"one of {datasets}",
         d.eval_dataset)
  _check(isinstance(d.shuffle_buffer, int) and d.shuffle_buffer >= 0, "data.shuffle_buffer",
         "an integer >= 0 (0 = the whole epoch)", d.shuffle_buffer)
  for field in ("frame_stride", "frame_size"):
    _check(getattr(d, field) > 0, f"data.{field}", "a positive integer", getattr(d, field))
  partial = any(a not in aus.label_space(n) for n in d.datasets
                for a in aus.label_space(d.label_space))
  _check(not (config.augment.mixup and partial), "augment.mixup",
         f"False: data.label_space={d.label_space!r} has AUs that data.datasets="
         f"{list(d.datasets)} do not code (partial labels), and mixup is never used with "
         "partial labels", config.augment.mixup)
  a = config.augment
  _check(a.fill_mode in augment.FILL_MODES, "augment.fill_mode", f"one of {augment.FILL_MODES}",
         a.fill_mode)
  for field in ("brightness_delta", "channel_drop_prob", "rotation_max_turns", "zoom",
                "translate", "label_smoothing"):
    _check(0.0 <= getattr(a, field) < 1.0, f"augment.{field}", "a value in [0, 1)",
           getattr(a, field))
  _check(_number(a.mixup_alpha) and a.mixup_alpha > 0, "augment.mixup_alpha",
         "a positive Beta parameter", a.mixup_alpha)
  lo = config.loss
  _check(lo.bce or lo.dice, "loss.bce", "True, or loss.dice True: the loss needs a term", lo.bce)
  _check(_number(lo.dice_weight) and lo.dice_weight >= 0, "loss.dice_weight", "a weight >= 0",
         lo.dice_weight)
  o = config.optim
  for field in ("backbone_lr", "weight_decay", "grad_clip_norm"):
    _check(_number(getattr(o, field)) and getattr(o, field) >= 0, f"optim.{field}",
           "a number >= 0", getattr(o, field))
  # The transformer schedule divides by both: lr(s) = (B n / tokens) d^-0.5 min(.., s w^-1.5).
  for field in ("transformer_batch_tokens", "warmup_epochs", "eps"):
    _check(_number(getattr(o, field)) and getattr(o, field) > 0, f"optim.{field}",
           "a positive number", getattr(o, field))
  _check(o.weight_decay_mask in optim.WEIGHT_DECAY_MASKS, "optim.weight_decay_mask",
         f"one of {optim.WEIGHT_DECAY_MASKS}", o.weight_decay_mask)
  _check(0.0 < o.backbone_decay <= 1.0, "optim.backbone_decay", "a decay in (0, 1]",
         o.backbone_decay)
  for field in ("b1", "b2"):
    _check(0.0 <= getattr(o, field) < 1.0, f"optim.{field}", "a value in [0, 1)",
           getattr(o, field))
  groups = ("backbone", "patch_encoder", "label_decoder")
  _check(all(g in groups for g in config.optim.frozen), "optim.frozen",
         f"a subset of {groups}", config.optim.frozen)
  t = config.train
  for field in ("batch_size", "log_every_steps", "eval_every_steps", "checkpoint_every_steps"):
    _check(getattr(t, field) > 0, f"train.{field}", "a positive integer", getattr(t, field))
  _check(t.num_epochs > 0 or t.num_steps > 0, "train.num_epochs",
         "a positive number (or train.num_steps > 0)", t.num_epochs)
  for field in ("num_steps", "profile_steps", "early_stopping_patience"):
    _check(getattr(t, field) >= 0, f"train.{field}", "an integer >= 0", getattr(t, field))
  _check(t.on_nonfinite in ("stop", "skip"), "train.on_nonfinite", "'stop' or 'skip'",
         t.on_nonfinite)
  e = config.eval
  _check(e.batch_size > 0, "eval.batch_size", "a positive integer", e.batch_size)
  _check(0.0 < e.threshold < 1.0, "eval.threshold", "a probability in (0, 1)", e.threshold)
  _check(0.0 < e.threshold_grid_step < 1.0, "eval.threshold_grid_step", "a step in (0, 1)",
         e.threshold_grid_step)
  _check(e.smoothing_window > 0, "eval.smoothing_window", "a positive integer",
         e.smoothing_window)
  _check(len(e.smoothing_windows) > 0 and _positive_ints(e.smoothing_windows),
         "eval.smoothing_windows", "positive integers", e.smoothing_windows)
  _check(isinstance(e.paper_num_thresholds, int) and e.paper_num_thresholds >= 2,
         "eval.paper_num_thresholds", "an integer >= 2", e.paper_num_thresholds)
  _check(len(e.paper_windows) > 0 and _positive_ints(e.paper_windows), "eval.paper_windows",
         "positive integers", e.paper_windows)
  _check(e.train_f1_stride >= 0, "eval.train_f1_stride", "an integer >= 0",
         e.train_f1_stride)
  _check(e.train_f1_stride == 0 or d.eval_dataset in d.datasets, "eval.train_f1_stride",
         f"0 unless data.eval_dataset ({d.eval_dataset!r}) is one of data.datasets (its "
         "training split is what gets scored)", e.train_f1_stride)
  _check(config.demo.dataset in DEMO_DATASETS, "demo.dataset", f"one of {DEMO_DATASETS}",
         config.demo.dataset)
  which = str(config.init_from_checkpoint)
  _check(which in ("best", "latest") or which.isdigit(), "init_from_checkpoint",
         "'best', 'latest' or a step number", config.init_from_checkpoint)
  _check(config.checkpoint.keep > 0, "checkpoint.keep", "a positive integer",
         config.checkpoint.keep)
