"""What a benchmark run measures, and how much of it: one `Sizes` per mode.

  full   the paper's model (InceptionV3 at 299 + MLT head) at the paper's batch: 12-17
         minutes on this machine's 2 cores
  quick  every row at tiny sizes (the small CNN at 75x75), ~2 minutes: the test runs it, and
         its figures only show that the machinery works
  gpu    one accelerator (benchmarks/gpu.sh): bfloat16 at the batches that keep a big chip
         busy, train and predict steps only

Every timing is a median of `timed` calls after `warmup` (benchmarks/timing.py).
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Sizes:
  """What one mode measures."""
  backbone: str  # the Flax backbone; the Keras peer builds the same one
  image_size: int  # model input, pixels
  train_batch: int  # global training batch (the paper's per-step batch here is 16)
  infer_batch: int  # inference batch
  warmup: int  # untimed calls after the compiling one
  timed: int  # timed calls
  input_steps: int  # train steps timed on the real input iterator (input wait vs compute)
  input_frames: int  # frames timed through the input pipeline alone
  augment_repeats: int  # timed calls of the (cheap) augmentation alone
  matmul_size: int  # n of the n^3 matmul measuring the machine's peak
  matmul_repeats: int  # best of this many
  metric_frames: int  # benchmarks/metric_speed: frames of the synthetic split
  metric_videos: int  # ... its videos
  metric_repeats: int  # ... median of this many


FULL = Sizes(backbone="inception_v3", image_size=299, train_batch=16, infer_batch=32,
             warmup=1, timed=3, input_steps=2, input_frames=3000, augment_repeats=5,
             matmul_size=4096, matmul_repeats=5, metric_frames=1_000_000,
             metric_videos=2000, metric_repeats=3)
# Compiling the InceptionV3 train step alone takes 15-30 s here, the Keras graph 35 s: quick
# uses the small CNN backbone in both frameworks, same head, and two timed steps.
QUICK = Sizes(backbone="small_cnn", image_size=75, train_batch=16, infer_batch=32,
              warmup=1, timed=2, input_steps=2, input_frames=256, augment_repeats=2,
              matmul_size=1024, matmul_repeats=2, metric_frames=20_000, metric_videos=50,
              metric_repeats=1)
GPU = Sizes(backbone="inception_v3", image_size=299, train_batch=256, infer_batch=256,
            warmup=2, timed=10, input_steps=0, input_frames=0, augment_repeats=0,
            matmul_size=8192, matmul_repeats=10, metric_frames=0, metric_videos=0,
            metric_repeats=0)

PLANS = {"full": FULL, "quick": QUICK, "gpu": GPU}


def get(name: str, train_batch: int = 0, infer_batch: int = 0) -> Sizes:
  """The sizes of mode `name`, with its batches replaced by those given (0: keep)."""
  sizes = PLANS[name]
  return dataclasses.replace(sizes, train_batch=train_batch or sizes.train_batch,
                             infer_batch=infer_batch or sizes.infer_batch)
