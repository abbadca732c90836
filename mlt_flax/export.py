"""Export a trained run for serving: one self-contained model, ONNX and StableHLO.

  python -m mlt_flax.export --workdir=RUN [--checkpoint=best] --output=DIR
                            [--formats=onnx,stablehlo] [--opset=17] [--platforms=cpu,cuda]
                            [--noverify] [--quantize=int8 [--calibration_frames=200]]

Writes into DIR:
  model.onnx       ONNX (opset 17, converted by jax2onnx), for ONNX Runtime and other
                   ONNX engines; one file, the weights inside;
  model.stablehlo  the same function as serialized `jax.export` StableHLO, reloadable with
                   `jax.export.deserialize(bytes).call(images)` without this package's code;
  model.int8.onnx  with --quantize=int8: the ONNX model quantized by ONNX Runtime's static
                   quantization (QDQ, int8 weights per channel, uint8 activations calibrated
                   on validation face crops of the run's dataset; mlt_flax/quantize.py);
  metadata.json    what a program needs to use them (below), written last: a folder with a
                   metadata.json is a complete export.

Both models take uint8 face crops (N, 112, 112, 3) (N dynamic; the size is the run's
config.data.frame_size, the crops `predict` makes and Aff-Wild2 ships), NHWC, RGB, values
0..255, and return float32 per-AU probabilities (N, L), columns in metadata['au_names']
order. Inside: the preprocessing of `augment.preprocess` (to [0, 1], bilinear resize to
config.model.image_size, to [-1, 1]), the backbone with its BatchNorm folded into the
convolutions (mlt_flax/models/fold.py), the transformer, the sigmoid. Computed in float32
whatever config.model.dtype the run trained with.

metadata.json: the AU names in output order, the decision thresholds (config.eval.threshold,
and the one set of per-AU thresholds and window `evaluate` says to ship, verbatim, when
<workdir>/eval_validation/report.json exists; a report of another checkpoint step is
refused), the smoothing window, the input and output
contract, the run's config, the checkpoint step, the package version, and each model file's
name, size and SHA-256. With --verify (default) both files are reloaded and compared with
the checkpoint's JAX model on random frames; the differences are recorded there too.

Design and measurements: docs/export.md.
"""

if __name__ == "__main__":  # as a program: TensorFlow loads with its start-up lines
  from mlt_flax import console as _console  # kept off the terminal, before any import
  _console.quiet_native_logs()  # pulls it in (console.quiet_native_logs says why)

import datetime
import importlib.metadata
import json
import logging
import os
import pathlib
import tempfile
from typing import Callable

from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mlt_flax import augment
from mlt_flax import checkpoints
from mlt_flax import cli
from mlt_flax import export_format
from mlt_flax import quantize as quantize_lib
from mlt_flax import reports
from mlt_flax import runtime
from mlt_flax.models import fold

# The folder's format lives in a dependency-free module that serving reads without JAX.
FORMAT, FORMAT_VERSION = export_format.FORMAT, export_format.FORMAT_VERSION
FORMATS = ("onnx", "stablehlo")
ONNX_FILE, STABLEHLO_FILE = export_format.ONNX_FILE, export_format.STABLEHLO_FILE
ONNX_INT8_FILE, METADATA_FILE = export_format.ONNX_INT8_FILE, export_format.METADATA_FILE
INPUT_NAME, OUTPUT_NAME = export_format.INPUT_NAME, export_format.OUTPUT_NAME
BATCH_DIM = export_format.BATCH_DIM
OPSET = 17  # see docs/export.md: the lowest opset this graph needs, read by every ONNX engine
PLATFORMS = ("cpu", "cuda")  # the StableHLO is lowered for these (jax.export multi-platform)
VERIFY_FRAMES = 3
VERIFY_TOLERANCE = 1e-4  # max |p_exported - p_jax| accepted at export (measured: ~1e-6)


class ExportError(ValueError):
  """A run that cannot be exported, or a folder that cannot be written. Starts with a path."""


# --------------------------------------------------------------------------- the served function


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
  """(n_out, n_in) weights of jax.image.resize's bilinear resize (no antialias) on one axis.

  Resizing the identity gives the weights themselves: resize is linear and separable, so
  out = M_h @ image @ M_w^T per channel is `augment.preprocess`'s resize, as two matmuls.
  """
  eye = jnp.eye(n_in, dtype=jnp.float32)
  return np.asarray(jax.image.resize(eye, (n_out, n_in), "linear", antialias=False))


def matmul_preprocess(frame_size: int, size: int) -> Callable:
  """`augment.preprocess` for square frame_size crops, its resize as two matmuls.

  jax2onnx 0.17.1 converts jax.image.resize only at a static batch size; the matmuls keep
  the batch dimension symbolic. Equal to augment.preprocess to ~1e-7 (the same weights,
  summed in another order).
  """
  if frame_size == size:
    return lambda images: augment.preprocess(images, size)
  m = resize_matrix(frame_size, size)  # computed here, outside any tracing

  def preprocess(images):
    x = augment.to_unit_range(images)
    x = jnp.einsum("oh,nhwc->nowc", m, x, precision=jax.lax.Precision.HIGHEST)
    x = jnp.einsum("pw,nowc->nopc", m, x, precision=jax.lax.Precision.HIGHEST)
    return augment.unit_to_model_range(x)

  return preprocess


def float32_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config with model.dtype float32: exported graphs compute in float32 (ONNX Runtime's
  CPU kernels have no bfloat16 convolutions; the parameters are float32 in any case)."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.model.dtype = "float32"
  return config


def served_fn(config: ml_collections.ConfigDict, folded_variables: dict, *,
              resize: str = "jax") -> Callable:
  """images uint8 (N, S, S, 3) -> probabilities (N, L): the folded model, preprocessing in.

  resize: 'jax' (augment.preprocess, as runtime.predict_step) or 'matmul'
  (`matmul_preprocess`, for jax2onnx). The variables are closed over: they become the
  exported graph's constants.
  """
  config = float32_config(config)
  model = fold.folded_model(runtime.build_model(config))
  size, frame_size = config.model.image_size, config.data.frame_size
  preprocess = (matmul_preprocess(frame_size, size) if resize == "matmul"
                else lambda images: augment.preprocess(images, size))

  def serve(images):
    return jax.nn.sigmoid(model.apply(folded_variables, preprocess(images), train=False))

  return serve


def input_spec(frame_size: int, symbolic: bool) -> jax.ShapeDtypeStruct:
  """The input (N, S, S, 3) uint8, N symbolic: a jax.export dimension or jax2onnx's name."""
  shape = (jax.export.symbolic_shape(f"{BATCH_DIM}, {frame_size}, {frame_size}, 3")
           if symbolic else (BATCH_DIM, frame_size, frame_size, 3))
  return jax.ShapeDtypeStruct(shape, jnp.uint8)


# ------------------------------------------------------------------------------ the two formats


def onnx_model(config, folded_variables, *, opset: int = OPSET, au_names=()):
  """The ONNX ModelProto of the served function (jax2onnx), checked by onnx.checker."""
  try:
    import jax2onnx  # pylint: disable=g-import-not-at-top
    import onnx  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ExportError(f"{e.name}: not installed; the ONNX export needs jax2onnx and onnx "
                      "(docs/export.md, 'Installing')") from e
  fn = served_fn(config, folded_variables, resize="matmul")
  # onnx_ir warns about the untyped shape constants of every Reshape: noise at export.
  logging.getLogger("onnx_ir").setLevel(logging.ERROR)
  proto = jax2onnx.to_onnx(fn, [input_spec(config.data.frame_size, symbolic=False)],
                           model_name="mlt_flax", opset=opset, input_names=[INPUT_NAME],
                           output_names=[OUTPUT_NAME])
  # jax2onnx 0.17.1 annotates some Relu outputs with NHWC shapes where the graph holds NCHW;
  # ONNX Runtime warns and falls back. The annotations are optional: drop them all.
  del proto.graph.value_info[:]
  proto.doc_string = ("mlt_flax: uint8 face crops (N, S, S, 3) NHWC RGB 0..255 -> per-AU "
                      "probabilities (N, L); metadata.json beside this file says more")
  entry = proto.metadata_props.add()
  entry.key, entry.value = "au_names", json.dumps(list(au_names))
  onnx.checker.check_model(proto)
  return proto


def stablehlo_export(config, folded_variables, *, platforms=PLATFORMS):
  """The served function as a jax.export.Exported, batch dimension symbolic."""
  fn = served_fn(config, folded_variables, resize="jax")
  return jax.export.export(jax.jit(fn), platforms=tuple(platforms))(
      input_spec(config.data.frame_size, symbolic=True))


# ------------------------------------------------------------------------------------ the folder


sha256 = export_format.sha256


def writable_folder(output) -> pathlib.Path:
  """`output`, created if needed, after a test write; else an ExportError naming it."""
  out = pathlib.Path(output)
  try:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out, prefix=".write_test"):
      pass
  except OSError as e:
    raise ExportError(f"{out}: cannot write the export there ({e.strerror or e})") from e
  return out


def _write_atomic(path: pathlib.Path, data: bytes) -> None:
  """`data` at `path`, whole or not at all (a temp file renamed over it)."""
  tmp = path.with_name(f".{path.name}.tmp")
  try:
    tmp.write_bytes(data)
    os.replace(tmp, path)
  except OSError as e:
    tmp.unlink(missing_ok=True)
    raise ExportError(f"{path}: cannot write it ({e.strerror or e})") from e


def _file_entry(path: pathlib.Path, **extra) -> dict:
  return {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256(path), **extra}


def _package_version() -> str:
  try:
    return importlib.metadata.version("mlt_flax")
  except importlib.metadata.PackageNotFoundError:
    return "unknown (not installed)"


def shipped_thresholds(workdir, step: int) -> dict | None:
  """The set `evaluate` says to ship (reports.read_shipped), verbatim; None if no report.

  Raises ExportError if the report scored another checkpoint step than `step`, the one
  exported, or is not an evaluation report with a shipped set.
  """
  try:
    shipped, path = reports.read_shipped(workdir)
  except ValueError as e:
    raise ExportError(str(e)) from e
  if shipped is None:
    return None
  report_step = int(shipped["checkpoint_step"])
  if report_step != int(step):
    raise ExportError(f"{path}: its thresholds were tuned for checkpoint step {report_step}, "
                      f"but this export is of step {step}; evaluate that checkpoint "
                      f"(--checkpoint={step}) or export step {report_step}")
  return shipped


def metadata(run: runtime.Run, checkpoint: str, files: dict, verification: dict | None,
             shipped: dict | None = None) -> dict:
  """metadata.json: everything a program needs to use the exported model; `shipped` is
  `shipped_thresholds`' set."""
  config = run.config
  names = run.au_names
  frame = config.data.frame_size
  return {
      "format": FORMAT,
      "format_version": FORMAT_VERSION,
      "package": {"name": "mlt_flax", "version": _package_version()},
      "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "source": {"workdir": str(pathlib.Path(run.workdir).resolve()), "checkpoint": checkpoint,
                 "step": int(run.step)},
      "au_names": names,
      "input": {
          "name": INPUT_NAME, "dtype": "uint8", "shape": [BATCH_DIM, frame, frame, 3],
          "layout": "NHWC", "channels": "RGB", "value_range": [0, 255],
          "description": (f"face crops of {frame}x{frame} pixels, cropped and aligned like "
                          "Aff-Wild2's cropped_aligned frames: what `predict` makes of raw "
                          "video, faces found by BlazeFace (full range), tracked, and aligned "
                          "on five FaceMesh landmarks to the Aff-Wild2 crop template "
                          "(mlt_flax.tracking, mlt_flax.alignment); the batch size N is free"),
      },
      "output": {
          "name": OUTPUT_NAME, "dtype": "float32", "shape": [BATCH_DIM, len(names)],
          "description": "per-AU probabilities (sigmoid of the logits), columns in au_names "
                         "order",
      },
      "inside_the_graph": [
          "uint8 -> float32 / 255",
          f"bilinear resize {frame} -> {config.model.image_size} (half-pixel centres, no "
          "antialias: augment.preprocess)",
          "x * 2 - 1",
          f"{config.model.backbone} backbone, BatchNorm folded into its convolutions",
          "MLT patch encoder and label decoder, sigmoid",
      ],
      "compute_dtype": "float32",
      "thresholds": {"default": float(config.eval.threshold), "shipped": shipped},
      "smoothing_window": int(config.eval.smoothing_window),
      "files": files,
      "verification": verification,
      "config": config.to_dict(),
  }


def verify(folder: pathlib.Path, files: dict, run: runtime.Run, frames: int = VERIFY_FRAMES,
           seed: int = 0) -> dict:
  """Max |p_file - p_jax| of each written file against the checkpoint's own JAX model
  (runtime.predict_step: unfolded, augment.preprocess) on random uint8 frames."""
  config = run.config
  size = config.data.frame_size
  images = np.random.default_rng(seed).integers(0, 256, (frames, size, size, 3), np.uint8)
  model = runtime.build_model(float32_config(config))
  reference = np.asarray(jax.jit(lambda v, x: runtime.predict_step(
      v, {"image": x}, model=model, config=config))(run.variables, images))
  out = {"frames": frames, "inputs": f"uniform random uint8, numpy seed {seed}",
         "reference": "runtime.predict_step (unfolded BatchNorm, JAX)",
         "tolerance": VERIFY_TOLERANCE}
  # The INT8 model's difference is recorded under another name, not held to the float
  # tolerance below: INT8 rounds.
  for entry, key in (("onnx", "onnx_max_abs_diff"), ("onnx_int8", "onnx_int8_max_abs_dp")):
    if entry in files:
      import onnxruntime as ort  # pylint: disable=g-import-not-at-top
      session = ort.InferenceSession(str(folder / files[entry]["file"]),
                                     providers=["CPUExecutionProvider"])
      got = session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]
      out[key] = float(np.abs(got - reference).max())
  if "stablehlo" in files:
    exported = jax.export.deserialize((folder / files["stablehlo"]["file"]).read_bytes())
    got = np.asarray(exported.call(images))
    out["stablehlo_max_abs_diff"] = float(np.abs(got - reference).max())
  worst = max(v for k, v in out.items() if k.endswith("_max_abs_diff"))
  if not worst <= VERIFY_TOLERANCE:  # NaN fails too
    raise ExportError(f"{folder}: the exported model differs from the checkpoint's JAX model "
                      f"by {worst:.3g} > {VERIFY_TOLERANCE} ({out})")
  return out


def export(workdir, output, *, checkpoint: str = "best", formats=FORMATS, opset: int = OPSET,
           platforms=PLATFORMS, check: bool = True, quantize: str | None = None,
           calibration_frames: int = quantize_lib.CALIBRATION_FRAMES) -> dict:
  """Exports the run in `workdir` at `checkpoint` into `output`; returns the metadata.

  quantize: 'int8' also writes model.int8.onnx (mlt_flax.quantize), calibrated on
  `calibration_frames` face crops of the run's validation split.
  """
  formats = tuple(formats)
  unknown = sorted(set(formats) - set(FORMATS))
  if unknown or not formats:
    raise ValueError(f"--formats={','.join(formats)}: expected some of {','.join(FORMATS)}")
  if quantize and (quantize not in quantize_lib.MODES or "onnx" not in formats):
    raise ValueError(f"--quantize={quantize}: expected one of {', '.join(quantize_lib.MODES)}, "
                     "with onnx in --formats (the INT8 model is the ONNX model quantized)")
  dp = runtime.DataParallel(jax.local_devices()[:1])
  try:
    run = runtime.load_run(workdir, checkpoint, dp)
  except (FileNotFoundError, ValueError, checkpoints.CheckpointError) as e:
    message, where = str(e), str(pathlib.Path(workdir))
    raise ExportError(message if message.startswith(where) else f"{where}: {message}") from e
  shipped = shipped_thresholds(workdir, run.step)  # refused before anything is written
  out = writable_folder(output)
  (out / METADATA_FILE).unlink(missing_ok=True)  # the folder is incomplete until the end
  run.variables = jax.device_get(run.variables)
  folded = fold.fold_variables(run.variables, run.config.model.bn_epsilon)
  files = {}
  if "onnx" in formats:
    proto = onnx_model(run.config, folded, opset=opset, au_names=run.au_names)
    _write_atomic(out / ONNX_FILE, proto.SerializeToString())
    del proto
    files["onnx"] = _file_entry(out / ONNX_FILE, opset=opset,
                                converter=f"jax2onnx {importlib.metadata.version('jax2onnx')}",
                                runtime="onnxruntime>=1.24 (any ONNX engine for this opset)")
  if quantize:
    crops = quantize_lib.calibration_crops(run.config, calibration_frames)
    made = quantize_lib.quantize_int8(out / ONNX_FILE, out / ONNX_INT8_FILE, crops,
                                      input_name=INPUT_NAME)
    files["onnx_int8"] = _file_entry(out / ONNX_INT8_FILE, opset=opset, **made,
                                     calibration_split=run.config.data.eval_split,
                                     runtime="onnxruntime (QDQ integer kernels)")
  if "stablehlo" in formats:
    exported = stablehlo_export(run.config, folded, platforms=platforms)
    _write_atomic(out / STABLEHLO_FILE, exported.serialize())
    files["stablehlo"] = _file_entry(
        out / STABLEHLO_FILE, serialization="jax.export.Exported.serialize",
        load="jax.export.deserialize(bytes).call(images)", platforms=list(exported.platforms),
        jax_version=jax.__version__,
        calling_convention_version=exported.calling_convention_version)
  verification = verify(out, files, run) if check else None
  meta = metadata(run, checkpoint, files, verification, shipped)
  _write_atomic(out / METADATA_FILE, json.dumps(meta, indent=1, default=float).encode())
  return meta


FLAGS = flags.FLAGS


def define_flags():
  """The CLI's flags (defined only when run as a program, so the module imports cleanly)."""
  flags.DEFINE_string("workdir", None, "The training run to export.", required=True)
  flags.DEFINE_string("checkpoint", "best", "'best' (by validation mean F1), 'latest' or a "
                      "step number.")
  flags.DEFINE_string("output", None, "Folder to write model.onnx, model.stablehlo and "
                      "metadata.json into (created if needed).", required=True)
  flags.DEFINE_list("formats", list(FORMATS), "Which of onnx, stablehlo to write.")
  flags.DEFINE_integer("opset", OPSET, "ONNX opset of model.onnx.")
  flags.DEFINE_list("platforms", list(PLATFORMS), "Platforms the StableHLO is lowered for.")
  flags.DEFINE_bool("verify", True, "Reload the written files and compare them with the "
                    "checkpoint's JAX model on random frames (costs one JAX compile).")
  flags.DEFINE_enum("quantize", None, list(quantize_lib.MODES), "Also write model.int8.onnx: "
                    "ONNX Runtime static quantization (QDQ, per-channel int8 weights) "
                    "calibrated on validation face crops.")
  flags.DEFINE_integer("calibration_frames", quantize_lib.CALIBRATION_FRAMES, "With "
                       "--quantize: validation face crops the activation ranges are read on.")


def run_cli():
  meta = export(FLAGS.workdir, FLAGS.output, checkpoint=FLAGS.checkpoint,
                formats=FLAGS.formats, opset=FLAGS.opset, platforms=FLAGS.platforms,
                check=FLAGS.verify, quantize=FLAGS.quantize,
                calibration_frames=FLAGS.calibration_frames)
  out = pathlib.Path(FLAGS.output)
  for entry in meta["files"].values():
    print(f"wrote {out / entry['file']} ({entry['bytes'] / 1e6:.1f} MB, sha256 "
          f"{entry['sha256'][:16]}...)")
  if meta["verification"]:
    diffs = {k: v for k, v in meta["verification"].items() if k.endswith("_max_abs_diff")}
    print("checked against the checkpoint's JAX model: " +
          ", ".join(f"{k.removesuffix('_max_abs_diff')} max |dp| {v:.2g}"
                    for k, v in diffs.items()) +
          (f"; int8 max |dp| {meta['verification']['onnx_int8_max_abs_dp']:.2g}"
           if "onnx_int8_max_abs_dp" in meta["verification"] else ""))
  print(f"wrote {out / METADATA_FILE} (checkpoint step {meta['source']['step']}, "
        f"{len(meta['au_names'])} AUs)")


if __name__ == "__main__":
  cli.main(define_flags, run_cli, log_dir=lambda: None)
