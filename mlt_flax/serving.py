"""An exported model (mlt_flax.export) loaded and run with ONNX Runtime.

  model = serving.ExportedModel.load("exported/")   # the folder, or its model.onnx
  probs = model(crops)    # uint8 (N, 112, 112, 3) face crops -> float32 (N, L)
  model.au_names, model.thresholds, model.smoothing_window, model.config, model.step

`load` trusts nothing it reads: the folder must hold a metadata.json written by the export,
the ONNX file must have the SHA-256 that metadata.json records (a truncated, damaged or
swapped file is refused before ONNX Runtime parses it), ONNX Runtime must accept it, and its
input and output must be the ones metadata.json describes. Each refusal is a `ModelError`
whose message starts with the path at fault.

`--model=DIR` loads the float model (model.onnx); `--model=DIR/model.int8.onnx` (or
`load(DIR, int8=True)`) the INT8 one `export --quantize=int8` wrote beside it, checked the
same way. This module imports numpy, ml_collections and (on load) onnxruntime only: no JAX,
no TensorFlow. `mlt_flax.predict.backends.OnnxBackend` runs it behind predict's backend
protocol.
"""

import dataclasses
import json
import pathlib

import ml_collections
import numpy as np

from mlt_flax import export_format

METADATA_FILE, FORMAT = export_format.METADATA_FILE, export_format.FORMAT
SUPPORTED_FORMAT_VERSIONS = (1,)


class ModelError(ValueError):
  """An exported model folder that is missing, damaged or not one. Starts with a path."""


def _folder_and_file(path) -> tuple[pathlib.Path, pathlib.Path | None]:
  """(export folder, the model file named) for --model=DIR or --model=DIR/model.onnx."""
  path = pathlib.Path(path)
  if path.is_file():
    return path.parent, path
  if not path.exists():
    raise ModelError(f"{path}: no such file or folder")
  return path, None


def read_metadata(folder: pathlib.Path, named: pathlib.Path | None = None) -> dict:
  """metadata.json of an export folder, checked to be one (named: the model file given)."""
  path = folder / METADATA_FILE
  if not path.is_file():
    where = f"{named}: no {METADATA_FILE} beside it" if named else f"{folder}: no {METADATA_FILE}"
    raise ModelError(f"{where}: not a model written by `python -m mlt_flax.export`")
  try:
    meta = json.loads(path.read_text())
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ModelError(f"{path}: not valid JSON ({e})") from e
  if not isinstance(meta, dict) or meta.get("format") != FORMAT:
    raise ModelError(f"{path}: not the metadata of an mlt_flax export (format "
                     f"{meta.get('format') if isinstance(meta, dict) else None!r})")
  if meta.get("format_version") not in SUPPORTED_FORMAT_VERSIONS:
    raise ModelError(f"{path}: format_version {meta.get('format_version')!r}; this mlt_flax "
                     f"reads {SUPPORTED_FORMAT_VERSIONS}")
  missing = [k for k in ("au_names", "input", "output", "files", "config", "thresholds")
             if k not in meta]
  if missing:
    raise ModelError(f"{path}: lacks {missing}")
  return meta


@dataclasses.dataclass
class ExportedModel:
  """An export folder's ONNX model in an ONNX Runtime session, with its metadata."""
  folder: pathlib.Path
  metadata: dict
  session: object  # onnxruntime.InferenceSession
  entry: str = "onnx"  # which of metadata['files'] it runs: 'onnx' or 'onnx_int8'

  @classmethod
  def load(cls, path, *, threads: int | None = None, int8: bool = False) -> "ExportedModel":
    """The model of an export folder (or of one of its .onnx files); threads: ONNX Runtime's
    intra-op threads (default: its own choice, one per physical core); int8: the quantized
    model of the folder (`export --quantize=int8`) instead of the float one."""
    folder, named = _folder_and_file(path)
    meta = read_metadata(folder, named)
    int8 = int8 or (named is not None and named.name == export_format.ONNX_INT8_FILE)
    key = "onnx_int8" if int8 else "onnx"
    entry = meta["files"].get(key)
    if not entry:
      raise ModelError(f"{folder / METADATA_FILE}: lists no {key} model (exported without "
                       + ("--quantize=int8)" if int8 else "--formats=onnx)"))
    onnx_path = folder / entry["file"]
    if named is not None and named.resolve() != onnx_path.resolve():
      raise ModelError(f"{named}: not the model {folder / METADATA_FILE} describes "
                       f"({entry['file']})")
    if not onnx_path.is_file():
      raise ModelError(f"{onnx_path}: missing (listed in {METADATA_FILE})")
    digest = export_format.sha256(onnx_path)
    if digest != entry["sha256"]:
      raise ModelError(
          f"{onnx_path}: SHA-256 {digest[:16]}... differs from the {entry['sha256'][:16]}... "
          f"{METADATA_FILE} records ({onnx_path.stat().st_size} bytes, exported "
          f"{entry['bytes']}): a damaged (truncated?) or replaced file; export it again")
    import onnxruntime as ort  # pylint: disable=g-import-not-at-top
    options = ort.SessionOptions()
    options.log_severity_level = 3  # ONNX Runtime's own warnings off the terminal
    if threads:
      options.intra_op_num_threads = threads
    try:
      session = ort.InferenceSession(str(onnx_path), options,
                                     providers=["CPUExecutionProvider"])
    except Exception as e:  # pylint: disable=broad-except  (onnxruntime's pybind errors)
      raise ModelError(f"{onnx_path}: ONNX Runtime cannot load it ({type(e).__name__}: "
                       f"{str(e).splitlines()[0][:200] if str(e) else ''})") from e
    model = cls(folder, meta, session, key)
    model._check_signature(onnx_path)
    return model

  def _check_signature(self, onnx_path: pathlib.Path) -> None:
    """The session's one input and one output are those metadata.json describes."""
    want_in, want_out = self.metadata["input"], self.metadata["output"]
    inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
    found = (f"inputs {[(i.name, i.type, i.shape) for i in inputs]}, outputs "
             f"{[(o.name, o.type, o.shape) for o in outputs]}")
    ok = (len(inputs) == 1 and len(outputs) == 1 and inputs[0].name == want_in["name"]
          and inputs[0].type == f"tensor({want_in['dtype']})"
          and list(inputs[0].shape[1:]) == list(want_in["shape"][1:])
          and outputs[0].name == want_out["name"]
          and outputs[0].type == "tensor(float)"
          and list(outputs[0].shape[1:]) == [len(self.au_names)])
    if not ok:
      raise ModelError(f"{onnx_path}: not the model {METADATA_FILE} describes: it has {found}; "
                       f"expected {want_in['name']} {want_in['dtype']} {want_in['shape']} -> "
                       f"{want_out['name']} float32 {want_out['shape']}")

  @property
  def au_names(self) -> list[str]:
    return list(self.metadata["au_names"])

  @property
  def config(self) -> ml_collections.ConfigDict:
    """The exported run's config."""
    return ml_collections.ConfigDict(self.metadata["config"])

  @property
  def frame_size(self) -> int:
    return int(self.metadata["input"]["shape"][1])

  @property
  def step(self) -> int:
    return int(self.metadata["source"]["step"])

  @property
  def thresholds(self) -> dict:
    """{'default': 0.5, 'shipped': None or evaluate's shipped set} (docs/export.md)."""
    return self.metadata["thresholds"]

  @property
  def shipped(self) -> dict | None:
    """The thresholds and window evaluate scored and the export ships, or None:
    {'thresholds': {AU: t}, 'window': int, 'tuned_on': str, 'checkpoint_step': int,
    'scored': {...}}."""
    return self.metadata["thresholds"].get("shipped")

  @property
  def smoothing_window(self) -> int:
    return int(self.metadata["smoothing_window"])

  def __call__(self, images: np.ndarray) -> np.ndarray:
    """uint8 (N, S, S, 3) face crops -> float32 (N, L) probabilities, any N >= 1."""
    images = np.ascontiguousarray(images, np.uint8)
    name_in, name_out = self.metadata["input"]["name"], self.metadata["output"]["name"]
    return self.session.run([name_out], {name_in: images})[0]
