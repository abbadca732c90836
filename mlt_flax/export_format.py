"""The export folder's format, shared by the writer (mlt_flax.export, JAX) and the readers
(mlt_flax.serving, ONNX Runtime): names and checksums only, no dependency beyond the standard
library, so that serving an export never imports the training stack.

  <folder>/model.onnx        float32 ONNX model (opset 17)
  <folder>/model.int8.onnx   with `export --quantize=int8`: the same model, INT8 (QDQ)
  <folder>/model.stablehlo   serialized jax.export StableHLO
  <folder>/metadata.json     what a program needs to use them, written last
"""

import hashlib

FORMAT = "mlt_flax.export"  # metadata['format']: what wrote the folder
FORMAT_VERSION = 1
ONNX_FILE, ONNX_INT8_FILE = "model.onnx", "model.int8.onnx"
STABLEHLO_FILE, METADATA_FILE = "model.stablehlo", "metadata.json"
INPUT_NAME, OUTPUT_NAME, BATCH_DIM = "images", "probs", "N"


def sha256(path) -> str:
  """The hex SHA-256 of a file, read in 1 MiB blocks."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()
