"""Inference images/s of the exported model next to JAX, in one run (docs/export.md).

  python -m benchmarks.export_speed [--models=paper,demo] [--batch_size=32] [--warmup=2]
                                    [--repeats=5] [--ort_threads=0] [--out=FILE.json]
                                    [--noint8] [--f1_workdir=workdir/demo]
  python -m benchmarks.export_speed --plan=full ...   (as benchmarks/run.py runs it)

For each model, three ways to turn a batch of uint8 112x112 crops into probabilities:
  jax          runtime.predict_fn, as evaluation and predict run it today;
  jax folded   the same with BatchNorm folded into the convolutions (fold.folded_predict_fn);
  onnxruntime  the ONNX graph `mlt_flax.export` writes (folded, preprocessing inside), run by
               ONNX Runtime's CPU provider with its default graph optimisations;
  ort int8     that graph through `export --quantize=int8` (mlt_flax/quantize.py: ONNX
               Runtime static quantization, QDQ, per-channel int8 weights), calibrated here
               on real face crops (the assets' photos and video through predict's face
               finder; the export calibrates on the run's validation crops); its max |dp| is
               printed against JAX and against the float ONNX Runtime path.
With --f1_workdir (a trained run, e.g. the demo's): that run exported float and INT8 as
`export --quantize=int8` does, both scored on its validation split (every labelled frame,
faceless ones filled as the challenge does, threshold config.eval.threshold, no smoothing):
the mean F1 of each and their difference.
Models: 'paper' is configs/abaw3.py (InceptionV3 at 299 with the imported ImageNet trunk, a
random MLT head), 'demo' is configs/demo.py (the small CNN at 112, random weights); with
--plan, the one model the other workers of benchmarks/run.py time at that plan's sizes
(random weights): speed does not depend on the weights. Each figure is the median of
--repeats timed calls after --warmup, in interleaved rounds (benchmarks/timing.py), on the
same random frames; the ratio column is against 'jax'. With --keras, the Keras peer of the
model joins the rounds (float inputs at the model's size, as benchmarks/keras_peer.py times
it). On a shared machine read the ratios, not the absolute figures (docs/performance.md,
"## Measuring").
"""

import os
import pathlib

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import cli
from benchmarks import plans
from benchmarks import timing
from benchmarks import workers
from mlt_flax import console
from mlt_flax import export
from mlt_flax import models
from mlt_flax import runtime
from mlt_flax import xla_cpu
from mlt_flax.models import fold


def _define_flags() -> None:
  flags.DEFINE_list("models", ["paper", "demo"], "Which of paper, demo to time.")
  flags.DEFINE_enum("plan", None, list(plans.PLANS), "Time the model of this benchmark plan "
                    "(benchmarks/plans.py) instead of --models.")
  flags.DEFINE_integer("batch_size", 32, "Frames per call.")
  flags.DEFINE_integer("warmup", 2, "Untimed calls after the first.")
  flags.DEFINE_integer("repeats", 5, "Timed calls; the median is reported.")
  flags.DEFINE_integer("ort_threads", 0, "ONNX Runtime intra-op threads (0: its default, one "
                       "per physical core).")
  flags.DEFINE_bool("keras", False, "Also time the Keras peer of the model "
                    "(benchmarks/keras_peer.py), interleaved with the other paths.")
  flags.DEFINE_string("out", None, "Also write the figures as JSON here.")
  flags.DEFINE_bool("int8", True, "Also time the INT8 model (export --quantize=int8); not "
                    "with --plan (benchmarks/run.py's float32 comparison).")
  flags.DEFINE_integer("calibration_frames", 64, "Face crops the INT8 timing model is "
                       "calibrated on.")
  flags.DEFINE_string("f1_workdir", None, "A trained run: report the validation mean-F1 "
                      "change of its INT8 export against its float export.")


def model_of(name: str):
  """(config, variables) of a benchmark model."""
  if name in plans.PLANS:
    config = workers.bench_config(plans.get(name), "float32")
    model = runtime.build_model(config)
    size = config.model.image_size
    return config, jax.device_get(jax.jit(lambda: model.init(
        jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False))())
  if name == "paper":
    from configs import abaw3 as module  # pylint: disable=g-import-not-at-top
  elif name == "demo":
    from configs import demo as module  # pylint: disable=g-import-not-at-top
  else:
    raise ValueError(f"--models: unknown model {name!r}; expected paper or demo")
  config = module.get_config()
  model = runtime.build_model(config)
  size = config.model.image_size
  variables = jax.jit(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)),
                                         train=False))()
  return config, models.load_pretrained_backbone(jax.device_get(variables), config.model)


def time_paths(config, variables, frames, f) -> list[dict]:
  """[{'path', 'first_s', 'seconds', 'images_per_s', 'max_abs_diff'}] of the three paths."""
  import onnxruntime as ort  # pylint: disable=g-import-not-at-top
  dp = runtime.DataParallel()
  batch = dp.to_global({"image": frames})
  plain = runtime.predict_fn(config, dp)
  replicated = jax.device_put(variables, dp.replicated)
  folded_predict, folded = fold.folded_predict_fn(config, dp, variables)
  options = ort.SessionOptions()
  if f.ort_threads:
    options.intra_op_num_threads = f.ort_threads
  proto = export.onnx_model(config, fold.fold_variables(variables, config.model.bn_epsilon))
  session = ort.InferenceSession(proto.SerializeToString(), options,
                                 providers=["CPUExecutionProvider"])
  paths = {
      "jax": lambda: np.asarray(plain(replicated, batch)),
      "jax folded": lambda: np.asarray(folded_predict(folded, batch)),
      "onnxruntime": lambda: session.run(["probs"], {"images": frames})[0],
  }
  int8_path = f.int8 and not f.plan
  if int8_path:
    int8 = ort.InferenceSession(str(int8_model(proto, f.calibration_frames, config)), options,
                                providers=["CPUExecutionProvider"])
    paths["ort int8"] = lambda: int8.run(["probs"], {"images": frames})[0]
  del proto
  reference = paths["jax"]()
  diffs = {name: float(np.abs(fn() - reference).max()) for name, fn in paths.items()}
  if int8_path:
    diffs["int8 vs onnxruntime"] = float(np.abs(paths["ort int8"]() -
                                                paths["onnxruntime"]()).max())
  if f.keras:
    paths["keras"] = _keras_path(config, len(frames))
  times = timing.interleaved_medians(paths, f.warmup, f.repeats)
  rows = [{"path": name, "first_s": first, "seconds": seconds,
           "images_per_s": len(frames) / seconds, "max_abs_diff": diffs.get(name)}
          for name, (first, seconds) in times.items()]
  if int8_path:
    next(r for r in rows if r["path"] == "ort int8")["max_abs_diff_vs_float_ort"] = diffs[
        "int8 vs onnxruntime"]
  return rows


def real_face_crops(n: int, size: int) -> np.ndarray:
  """Up to n face crops of the assets (photos, then the video's frames), as predict finds
  and aligns them (predict's default face finder)."""
  from mlt_flax import assets  # pylint: disable=g-import-not-at-top
  from mlt_flax import media  # pylint: disable=g-import-not-at-top
  from mlt_flax.predict import inputs  # pylint: disable=g-import-not-at-top
  crops = []
  for name in ("single_face.jpg", "multi_face.jpg", "0-f1-su-ph.jpg", "15-f13-anc-ph.jpg",
               "single_face.mp4", "WolfgangLanger_Pexels.mp4"):
    finder = inputs.face_finder(crop_size=size)
    crops += [r.face for r in finder.track(media.read_frames(assets.path(name)))
              if r.face is not None]
    if len(crops) >= n:
      break
  return np.stack(crops[:n])


def int8_model(proto, calibration_frames: int, config):
  """The INT8 model of an ONNX proto (mlt_flax.quantize, as `export --quantize=int8`),
  written to a temporary folder; returns its path."""
  import tempfile  # pylint: disable=g-import-not-at-top
  from mlt_flax import quantize  # pylint: disable=g-import-not-at-top
  folder = pathlib.Path(tempfile.mkdtemp(prefix="export_speed_"))
  (folder / "model.onnx").write_bytes(proto.SerializeToString())
  crops = real_face_crops(calibration_frames, config.data.frame_size)
  quantize.quantize_int8(folder / "model.onnx", folder / "model.int8.onnx", crops,
                         input_name=export.INPUT_NAME)
  return folder / "model.int8.onnx"


def f1_change(workdir: str) -> dict:
  """Validation mean F1 of a run's float and INT8 exports (ONNX Runtime), same frames."""
  import tempfile  # pylint: disable=g-import-not-at-top
  from mlt_flax import evaluate  # pylint: disable=g-import-not-at-top
  from mlt_flax import input_pipeline  # pylint: disable=g-import-not-at-top
  from mlt_flax import metrics  # pylint: disable=g-import-not-at-top
  from mlt_flax import serving  # pylint: disable=g-import-not-at-top
  out = pathlib.Path(tempfile.mkdtemp(prefix="export_f1_"))
  meta = export.export(workdir, out, formats=("onnx",), quantize="int8", check=False)
  models_ = {"float": serving.ExportedModel.load(out),
             "int8": serving.ExportedModel.load(out, int8=True)}
  config = models_["float"].config
  probs = {k: [] for k in models_}
  rows = {"labels": [], "face": [], "video": [], "frame": []}
  for b in input_pipeline.eval_batches(config, local_batch_size=config.eval.batch_size,
                                       frame_stride=1, faceless=True):
    keep = b["valid"].astype(bool)
    for k, m in models_.items():
      probs[k].append(m(b["image"][keep]))
    for k in rows:
      rows[k].append(b[k][keep])
  rows = {k: np.concatenate(v) for k, v in rows.items()}
  rows["video"] = rows["video"].astype(str)
  order = np.lexsort((rows["frame"], rows["video"]))  # as runtime.collect sorts
  rows = {k: v[order] for k, v in rows.items()}
  threshold = config.eval.threshold
  result = {"workdir": str(workdir), "step": meta["source"]["step"],
            "frames": int(len(order)), "threshold": threshold,
            "calibration_frames": meta["files"]["onnx_int8"]["calibration_frames"]}
  p = {k: np.concatenate(v)[order] for k, v in probs.items()}
  columns, _ = runtime.scored_aus(config)
  for k in models_:  # scored as evaluate scores the challenge's fixed-threshold row
    view = evaluate.challenge_view({**rows, "probs": p[k]}, columns)
    _, result[f"mean_f1_{k}"] = metrics.f1_scores(view["probs"], view["labels"], threshold)
  result["max_abs_dp"] = float(np.abs(p["int8"] - p["float"]).max())
  result["delta_mean_f1"] = result["mean_f1_int8"] - result["mean_f1_float"]
  return result



def _keras_path(config, batch_size: int):
  """The Keras peer of the same model (benchmarks/keras_peer.py): predict_on_batch on float
  inputs already at the model's size, as the peer's own worker times it."""
  from benchmarks import keras_peer  # pylint: disable=g-import-not-at-top
  size = config.model.image_size
  model = keras_peer.build_model(size, len(runtime.au_names(config)), config.model,
                                 backbone=config.model.backbone)
  x = np.random.default_rng(1).uniform(-1, 1, (batch_size, size, size, 3)).astype(np.float32)
  return lambda: model.predict_on_batch(x)


def main() -> None:
  f = flags.FLAGS
  frames = np.random.default_rng(0).integers(0, 256, (f.batch_size, 112, 112, 3), np.uint8)
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} x{jax.device_count()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; batch "
        f"{f.batch_size} of 112x112 uint8; median of {f.repeats} after {f.warmup} warm-up calls")
  print(f"{'model':>6} {'path':>12} {'first s':>8} {'ms/batch':>9} {'images/s':>9} "
        f"{'ratio':>6} {'max |dp|':>9}")
  results = {}
  for name in [f.plan] if f.plan else f.models:
    config, variables = model_of(name)
    rows = time_paths(config, variables, frames, f)
    base = rows[0]["seconds"]
    for r in rows:
      r["ratio"] = base / r["seconds"]
      diff = "" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:9.1e}"
      if "max_abs_diff_vs_float_ort" in r:
        diff += f" ({r['max_abs_diff_vs_float_ort']:.1e} vs onnxruntime)"
      print(f"{name:>6} {r['path']:>12} {r['first_s']:8.1f} {1e3 * r['seconds']:9.1f} "
            f"{r['images_per_s']:9.1f} {r['ratio']:6.2f} {diff:>9}")
    results[name] = {"image_size": config.model.image_size,
                     "backbone": config.model.backbone, "rows": rows}
  if f.f1_workdir:
    r = f1_change(f.f1_workdir)
    print(f"INT8 vs float on the validation split of {r['workdir']} (step {r['step']}, "
          f"{r['frames']} frames, threshold {r['threshold']}): mean F1 "
          f"{r['mean_f1_float']:.4f} -> {r['mean_f1_int8']:.4f} (dF1 "
          f"{r['delta_mean_f1']:+.4f}), max |dp| {r['max_abs_dp']:.3f}")
    results["f1_change"] = r
  print(f"load average after: {os.getloadavg()[0]:.1f}")
  if f.out:
    cli.write_json(f.out, {"batch_size": f.batch_size, "models": results})


def _main() -> None:
  xla_cpu.apply_defaults()  # before JAX starts a backend: 'jax' is predict as it runs today
  console.setup(None)  # libraries' INFO logs (jax2onnx's) off the terminal
  main()


if __name__ == "__main__":
  cli.run(_define_flags, _main)
