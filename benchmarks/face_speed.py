"""Real faces in: face finding, predict end to end and its memory, the new path beside Haar.

  python -m benchmarks.face_speed [--video=WolfgangLanger_Pexels.mp4] [--paper_frames=472]
                                  [--memory_frames=100,1000]

One run prints four tables (docs/faces.md explains the design they measure):

  1. Face finding alone, on frames decoded beforehand (decoding left out): the Haar path
     (faces.FaceCropper, detection every frame, one face) and the default path
     (tracking.MultiFaceTracker: BlazeFace every --detect_every frames, FaceMesh on every
     face and frame, 5-point alignment to 112x112), with the full-range and the short-range
     detector: frames/s on --video, and the faces found there (frames with a face), on
     multi_face.jpg (faces) and on no_face.mp4 (frames with a face).
  2. predict end to end (predict.predict_with on the file: decoding, face finding, batching,
     jitted inference, CSV) with the demo model (configs/demo.py, fresh weights: speed does
     not depend on them), beside the model alone on the same number of aligned crops.
  3. The same with the paper's model (configs/abaw3.py: InceptionV3 at 299), on the first
     --paper_frames frames of --video; end to end over model alone is the share of the
     model's throughput that predict keeps (host work overlaps the device's). The model alone
     is timed before and after the end-to-end passes, and their mean is the reference.
  4. Peak RSS of predict on --video's frames looped into videos of --memory_frames frames,
     each measured in a fresh process after a warm-up predict (as tests/rss.py does).

Figures are printed, never asserted (benchmarks/timing.py: one pass over the stream).
"""

import contextlib
import importlib
import io
import json
import pathlib
import subprocess
import sys
import tempfile

from absl import flags
import cv2
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import cli
from benchmarks import timing
from mlt_flax import assets
from mlt_flax import face_models
from mlt_flax import faces
from mlt_flax import media
from mlt_flax import predict
from mlt_flax import runtime
from mlt_flax import tracking

ROOT = pathlib.Path(__file__).resolve().parents[1]
LOOP_FOURCC = "MJPG"  # the looped memory videos: written and decoded fast, no codec needed


def _define_flags() -> None:
  flags.DEFINE_string("video", "WolfgangLanger_Pexels.mp4", "A video of mlt_flax.assets.")
  flags.DEFINE_integer("detect_every", tracking.DEFAULT_DETECT_EVERY,
                       "BlazeFace runs every N frames while faces are tracked.")
  flags.DEFINE_integer("paper_frames", 192, "Frames of --video the paper's model predicts "
                       "(3 full batches of its 64: about 40 s a pass on 2 CPU cores).")
  flags.DEFINE_list("memory_frames", ["100", "1000"], "Lengths of the looped videos whose "
                    "peak RSS is measured.")


def fresh_predictor(config_name: str) -> predict.Predictor:
  """A Predictor on configs/<config_name>.py with freshly initialised weights."""
  config = importlib.import_module(f"configs.{config_name}").get_config()
  model = runtime.build_model(config)
  size = config.model.image_size
  variables = jax.jit(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)),
                                         train=False))()
  return predict.Predictor(None, run=runtime.Run(None, config, jax.device_get(variables), 0))


def write_video(path: pathlib.Path, frames: list[np.ndarray], num_frames: int, fps: float):
  """num_frames of `frames` (RGB), looped, as an MJPG .avi."""
  height, width = frames[0].shape[:2]
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*LOOP_FOURCC), fps,
                           (width, height))
  for i in range(num_frames):
    writer.write(cv2.cvtColor(frames[i % len(frames)], cv2.COLOR_RGB2BGR))
  writer.release()
  return path


def _faces_found(finder, frames) -> int:
  """Frames with a face (videos), or faces (one photo)."""
  records = list(finder.track(frames))
  if len(frames) == 1:
    return sum(r.face is not None for r in records)
  return len({r.index for r in records if r.face is not None})


def face_finding(f, frames: list[np.ndarray]) -> None:
  photo = [media.read_image(assets.path("multi_face.jpg"))]
  no_face = list(media.read_video(assets.path("no_face.mp4")))
  finders = {"Haar cascade + box crop (every frame, one face)": faces.FaceCropper()}
  for model, role in (("full", "default"), ("short", "option")):
    finders[f"BlazeFace {model} range + FaceMesh + align ({role})"] = tracking.MultiFaceTracker(
        face_models.FaceDetector(model), face_models.FaceMesh(), detect_every=f.detect_every)
  height, width = frames[0].shape[:2]
  print(f"1. face finding on decoded frames; {f.video}: {len(frames)} frames of "
        f"{width}x{height}; tflite runtime {face_models.interpreter_name()}")
  print(f"{'path':62s}{'frames/s':>9s}{'video':>7s}{'multi':>7s}{'no_face':>9s}")
  for label, finder in finders.items():
    list(finder.track(frames[:2]))  # warm-up: first invocations allocate
    found, fps = timing.per_second(lambda finder=finder: _faces_found(finder, frames))
    print(f"{label:62s}{fps:9.1f}{found:7d}{_faces_found(finder, photo):7d}"
          f"{_faces_found(finder, no_face):9d}")
  print(f"  (video: frames with a face of {len(frames)}; multi: faces found of the 5 of "
        "multi_face.jpg; no_face: frames with a face of no_face.mp4's)")


def end_to_end(name: str, predictor: predict.Predictor, video: pathlib.Path,
               frames: list[np.ndarray], out: pathlib.Path) -> None:
  """predict end to end on the video file (BlazeFace and Haar) beside the model alone."""
  crops = [r.face for r in predict.face_finder(crop_size=predictor.frame_size).track(frames)
           if r.face is not None]
  crops = (crops * (len(frames) // max(len(crops), 1) + 1))[:len(frames)]

  def model_only() -> int:
    records = (faces.Frame(i + 1, c, None, c.shape[:2], 1) for i, c in enumerate(crops))
    return len(predictor.run(records, "model-only").frames)

  model_only()  # compile outside the timing
  _, before = timing.per_second(model_only)
  rows = []
  for detector in ("blazeface", "haar"):
    def whole(detector=detector) -> int:
      with contextlib.redirect_stdout(io.StringIO()):  # its progress and summary lines
        (s,) = predict.predict_with(predictor, str(video), out / detector, detector=detector)
      return s["frames"]
    _, fps = timing.per_second(whole)
    rows.append((f"predict end to end, --detector={detector}", fps))
  # The model alone again after: on a shared machine the throughput drifts; the mean of the
  # passes before and after is what the end-to-end passes between them compare with.
  _, after = timing.per_second(model_only)
  model_fps = (before + after) / 2
  print(f"\n{name}: {predictor.config.model.backbone} at {predictor.config.model.image_size}, "
        f"batch {predictor.batch_size}, {len(frames)} frames of {video.name}")
  print(f"{'stage':62s}{'frames/s':>9s}{'of model':>10s}")
  print(f"{'model alone on aligned crops (predictor.run), before and after':62s}"
        f"{model_fps:9.1f}{'100%':>10s}   ({before:.1f}, {after:.1f})")
  for label, fps in rows:
    print(f"{label:62s}{fps:9.1f}{100 * fps / model_fps:9.0f}%")


# In a fresh process: one warm-up predict, then each video's peak RSS on its own.
_PEAK_RSS = """
import json, pathlib, re, sys
from benchmarks import face_speed
from mlt_flax import predict
out, *videos = sys.argv[1:]
def peak_mb():
  status = pathlib.Path("/proc/self/status").read_text()
  return int(re.search(r"VmHWM:\\s+(\\d+) kB", status)[1]) / 1024
predictor = face_speed.fresh_predictor("demo")
predict.predict_with(predictor, videos[0], out)
peaks = []
for video in videos:
  pathlib.Path("/proc/self/clear_refs").write_text("5")
  predict.predict_with(predictor, video, out)
  peaks.append(peak_mb())
print(json.dumps(peaks))
"""


def memory(f, frames: list[np.ndarray], fps: float, tmp: pathlib.Path) -> None:
  lengths = [int(n) for n in f.memory_frames]
  videos = [write_video(tmp / f"loop_{n}.avi", frames, n, fps) for n in lengths]
  r = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(tmp / "rss"), *map(str, videos)],
                     cwd=ROOT, capture_output=True, text=True, check=True)
  peaks = json.loads(r.stdout.splitlines()[-1])
  height, width = frames[0].shape[:2]
  print(f"\n4. peak RSS of predict (demo model, --detector=blazeface), {f.video}'s frames looped, "
        f"{width}x{height}")
  print(f"{'video':62s}{'peak RSS MB':>12s}")
  for n, peak in zip(lengths, peaks):
    print(f"{f'{n} frames':62s}{peak:12.0f}")


def main() -> None:
  f = flags.FLAGS
  video = assets.path(f.video)
  frames = list(media.read_video(video))
  face_finding(f, frames)
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    fps = media.video_info(video)["fps"]
    end_to_end("2. demo model (configs/demo.py)", fresh_predictor("demo"), video, frames,
               tmp / "demo")
    paper = frames[:f.paper_frames]
    paper_video = write_video(tmp / "paper.avi", paper, len(paper), fps)
    end_to_end("3. paper's model (configs/abaw3.py)", fresh_predictor("abaw3"), paper_video,
               paper, tmp / "paper")
    memory(f, frames, fps, tmp)


if __name__ == "__main__":
  cli.run(_define_flags, main)
