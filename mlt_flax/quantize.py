"""INT8 serving model: ONNX Runtime's static quantization of the exported float ONNX model.

  python -m mlt_flax.export --workdir=RUN --output=DIR --quantize=int8 [--calibration_frames=200]

writes DIR/model.int8.onnx beside DIR/model.onnx, listed in metadata.json under
files['onnx_int8'] with how it was made. The quantization is onnxruntime.quantization's
`quantize_static`: QDQ format (QuantizeLinear/DequantizeLinear pairs around each quantized
operator, which ONNX Runtime fuses into integer kernels), weights int8 per output channel
(symmetric), activations uint8 (asymmetric), their ranges calibrated (min/max) on validation
face crops of the run's own dataset, taken evenly over the split. The graph's preprocessing
(uint8 -> [-1, 1], the bilinear resize as two matmuls) stays float: it is computed once per
pixel and quantizing the resize would add error for no speed.

What it costs in accuracy and gains in speed is measured by benchmarks/export_speed.py
(BENCHMARKS.md, docs/export.md).
"""

import pathlib
import tempfile
from typing import Iterator

import numpy as np

CALIBRATION_FRAMES = 200  # default --calibration_frames: face crops the ranges are read on
MODES = ("int8",)  # --quantize
# Operators quantized: the backbone's convolutions and the transformer's matmuls, and the
# operators between the convolutions (ReLU, pools, concatenation), so that the trunk stays in
# int8 from one convolution to the next instead of paying a DequantizeLinear/QuantizeLinear
# pair around each of them. On the paper's model (InceptionV3 trunk, 2026-12-03, batch 16,
# 64 real face crops, medians of 3): float 0.657 s, these ops 0.329 s (2.0x, max |dp| 0.051),
# the three matmul/conv types alone 0.437 s (1.5x, max |dp| 0.054). The preprocessing's two
# resize matmuls are excluded by name (PREPROCESS_MARKERS).
OP_TYPES = ("Conv", "MatMul", "Gemm", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool",
            "Concat")
PREPROCESS_MARKERS = ("einsum", "Einsum")  # jax2onnx names the resize matmuls after einsum


def calibration_crops(config, frames: int = CALIBRATION_FRAMES, split: str | None = None
                      ) -> np.ndarray:
  """(n <= frames, S, S, 3) uint8 face crops of the run's validation split (the config's
  eval split), taken evenly over all its frames with a face.

  Only about 2 x `frames` of the split's frames are decoded (every k-th, k from the split's
  size), not the whole split: Aff-Wild2's validation set is ~10^5 frames.
  """
  from mlt_flax import input_pipeline  # pylint: disable=g-import-not-at-top  (TensorFlow)
  split = split or config.data.eval_split
  total = input_pipeline.builder(config.data.eval_dataset, config.data.data_dir).info.splits[
      split].num_examples

  def face_crops(stride: int) -> np.ndarray:
    crops = []
    for batch in input_pipeline.eval_batches(config, local_batch_size=config.eval.batch_size,
                                             split=split, frame_stride=stride):
      crops.append(batch["image"][batch["valid"].astype(bool) & batch["face"].astype(bool)])
    return np.concatenate(crops) if crops else np.zeros((0,), np.uint8)

  stride = max(1, total // (2 * frames))
  crops = face_crops(stride)
  if len(crops) < frames and stride > 1:  # mostly faceless frames: take them all after all
    crops = face_crops(1)
  if not len(crops):
    raise ValueError(f"config.data.eval_split={split}: no face crops to calibrate the INT8 "
                     "model on")
  pick = np.unique(np.linspace(0, len(crops) - 1, min(frames, len(crops))).round().astype(int))
  return crops[pick]


class _Crops:
  """onnxruntime.quantization.CalibrationDataReader over batches of crops."""

  def __init__(self, input_name: str, crops: np.ndarray, batch: int):
    self._batches: Iterator = iter(
        {input_name: crops[i:i + batch]} for i in range(0, len(crops), batch))

  def get_next(self):
    return next(self._batches, None)


def preprocess_nodes(model_path) -> list[str]:
  """Names of the graph's nodes before the backbone: the preprocessing's resize matmuls."""
  import onnx  # pylint: disable=g-import-not-at-top
  graph = onnx.load(str(model_path), load_external_data=False).graph
  return [n.name for n in graph.node if n.op_type in OP_TYPES and
          any(m in n.name for m in PREPROCESS_MARKERS)]


def quantize_int8(float_path, out_path, crops: np.ndarray, *, input_name: str,
                  batch: int = 16) -> dict:
  """Writes the INT8 (QDQ, per-channel) model of the float ONNX model at float_path to
  out_path, calibrated on `crops` (uint8 (n, S, S, 3)); returns how it was made."""
  from onnxruntime import quantization as q  # pylint: disable=g-import-not-at-top
  excluded = preprocess_nodes(float_path)
  with tempfile.TemporaryDirectory() as tmp:
    # ONNX Runtime's recommended pre-processing: shape inference and graph optimisation,
    # so that quantization sees the fused graph ONNX Runtime will run.
    prepared = pathlib.Path(tmp) / "prepared.onnx"
    q.quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
    q.quantize_static(str(prepared), str(out_path), _Crops(input_name, crops, batch),
                      quant_format=q.QuantFormat.QDQ, per_channel=True,
                      activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                      op_types_to_quantize=list(OP_TYPES), nodes_to_exclude=excluded,
                      calibrate_method=q.CalibrationMethod.MinMax)
  return {"quantization": "onnxruntime.quantization.quantize_static, QDQ",
          "weights": "int8, symmetric, per output channel",
          "activations": "uint8, asymmetric, MinMax calibration",
          "operators": list(OP_TYPES), "excluded": "the preprocessing's resize matmuls",
          "calibration_frames": int(len(crops))}
