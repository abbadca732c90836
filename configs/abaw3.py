"""The paper's settings (Tallec et al., ABAW3 2022), every number as in shared RECIPE.md.

Fine-tuning the MLT on Aff-Wild2 (ABAW3 AU track) from an ImageNet InceptionV3 at 299x299.
Smaller configs (demo, tiny) import this one and override a few fields.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0  # PRNG seed for initialisation, dropout and the data stream

  # Model (RECIPE "Model").
  m = config.model = ml_collections.ConfigDict()
  m.backbone = "inception_v3"  # 'inception_v3' (the paper) or 'small_cnn' (fast CPU runs)
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
  m.num_encoder_layers = 1  # N_x: self-attention layers over patches
  m.num_decoder_layers = 2  # N_l: label-token decoder layers
  m.decoder_layout = "code"  # 'code': SA+MLP then CA+MLP per layer; 'paper': SA, CA, MLP
  m.ln_epsilon = 1e-6  # LayerNorm epsilon (post-LN)
  m.gelu_approximate = False  # exact erf GELU, as Keras
  m.position_embedding_std = 0.02  # patch position embedding init N(0, 0.02)
  m.use_position_embedding = True  # add the learned position embedding to patch tokens
  m.label_token_std = 1.0  # label token init N(0, 1)
  m.dtype = "float32"  # compute dtype: 'float32' or 'bfloat16' (params stay float32)

  # Data (RECIPE "Data and augmentation", "Dataset layouts").
  d = config.data = ml_collections.ConfigDict()
  d.datasets = ("abaw3_au",)  # TFDS datasets mixed for training
  d.weights = (1.0,)  # mixing weight of each dataset
  d.label_space = "abaw3_au"  # label space of the model: a dataset's own AUs or 'union17'
  d.train_splits = ("train",)  # the split trained on, one per dataset (TFDS split syntax)
  d.eval_dataset = "abaw3_au"  # the dataset evaluated on
  d.eval_split = "validation"  # its split evaluated on
  d.data_dir = "data/tfds"  # where the TFDS datasets are built
  d.frame_stride = 5  # keep every 5th frame of each video, in training and validation
  d.frame_size = 112  # frames travel to the devices as uint8 at this size (Aff-Wild2's own)

  # Augmentation, applied in this order (RECIPE "Data and augmentation").
  a = config.augment = ml_collections.ConfigDict()
  a.mixup = True  # mixup (never with partial labels)
  a.mixup_alpha = 0.4  # lambda ~ Beta(0.4, 0.4) per sample
  a.hflip = True  # random horizontal flip
  a.brightness_delta = 0.1  # add U(-0.1, 0.1) in [0, 1] pixel space, then clip
  a.channel_drop_prob = 0.3  # each channel zeroed with this probability (0.1 in pretraining)
  a.rotation_max_turns = 0.1  # rotation up to +-0.1 of a full turn (+-36 degrees)
  a.zoom = 0.1  # zoom +-10%
  a.fill_mode = "reflect"  # corners uncovered by rotation/zoom: 'reflect' (Keras), 'nearest', 'constant'
  a.label_smoothing = 0.1  # y * (1 - s) + s / 2, i.e. y * 0.9 + 0.05

  # Loss (RECIPE "Loss").
  lo = config.loss = ml_collections.ConfigDict()
  lo.bce = True  # binary cross-entropy term
  lo.frequency_weights = True  # weight each AU by w_t = T (1/f_t) / sum_k (1/f_k)
  lo.dice = True  # per-sample, per-AU weighted Dice term
  lo.dice_weight = 0.5  # lambda: total = BCE + lambda * Dice

  # Optimisation (RECIPE "Optimisation"): AdamW with three parameter groups.
  o = config.optim = ml_collections.ConfigDict()
  o.backbone_lr = 5e-4  # lr0 of the backbone: lr0 * decay^epoch, staircase
  o.backbone_decay = 0.99  # per-epoch decay of the backbone learning rate
  o.transformer_batch_tokens = 25000.0  # lr(s) = (B n / this) d^-0.5 min(s^-0.5, s w^-1.5)
  o.warmup_epochs = 2.5  # w = warm-up of the transformer groups, in epochs
  o.b1 = 0.9  # Adam beta1
  o.b2 = 0.999  # Adam beta2
  o.eps = 1e-7  # Adam epsilon (Keras default)
  o.weight_decay = 1.0  # decay coefficient = the scheduled lr itself (authors' optimizer)
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
  t.profile_steps = 0  # if > 0, profile this many steps (TensorBoard trace in the workdir)

  # Checkpoints (Orbax), in <workdir>/checkpoints.
  ck = config.checkpoint = ml_collections.ConfigDict()
  ck.keep = 3  # keep the last 3 checkpoints, plus the best by validation mean F1
  ck.async_save = True  # write checkpoints in the background while training goes on
  config.init_from = ""  # another run's workdir or checkpoint to start from (pretrain -> fine-tune)

  # Evaluation (RECIPE "Evaluation").
  e = config.eval = ml_collections.ConfigDict()
  e.batch_size = 64  # global batch of evaluation and prediction
  e.threshold = 0.5  # fixed decision threshold
  e.smoothing_window = 20  # w_s: centred moving mean of probabilities inside each video
  e.threshold_grid_step = 0.005  # per-AU threshold tuning grid
  e.smoothing_windows = (5, 10, 15, 20, 25)  # windows tried when tuning (authors: 5-25)

  # The demo (`main --mode=demo`, `--mode=photo_demo`): synthetic data and real faces.
  de = config.demo = ml_collections.ConfigDict()
  de.photos = ("single_face.jpg", "0-f1-su-ph.jpg", "15-f13-anc-ph.jpg")  # photo_demo assets
  de.synthetic_dir = "data/synthetic/abaw3_au"  # where the synthetic videos are generated
  de.synthetic_seed = 0  # seed of the synthetic videos
  de.num_workers = 2  # processes rendering synthetic videos
  de.num_train_videos = 0  # synthetic training videos; 0 = the generator's default (24)
  de.num_val_videos = 0  # synthetic validation videos; 0 = the generator's default (8)
  de.frames_per_video = 0  # mean frames per synthetic video; 0 = the generator's default
  de.video = "WolfgangLanger_Pexels.mp4"  # the real face video predict runs on (an asset)
  de.video_heatmap_frames = (100, 300)  # its frames drawn with attention heatmaps
  de.synthetic_video = ""  # a synthetic validation video predict runs on; '' = the first
  de.synthetic_heatmap_frames = (30, 120)  # its frames drawn with attention heatmaps
  return config
