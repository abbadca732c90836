"""Real faces in: face finding, predict end to end and its memory, the new path beside Haar.

  python -m benchmarks.face_speed [--video=WolfgangLanger_Pexels.mp4] [--paper_frames=472]
                                  [--memory_frames=100,1000]

One run prints five tables (docs/faces.md explains the design they measure):

  1. Face finding alone, on frames decoded beforehand (decoding left out): the Haar path
     (faces.FaceCropper, detection every frame, one face) and the default path
     (tracking.MultiFaceTracker: BlazeFace every --detect_every frames, FaceMesh on every
     face and frame, 5-point alignment to 112x112), with the full-range detector as predict
     builds it (tiles for faces down to face_models.DEFAULT_MIN_FACE px), the same on the
     whole frame only (min_face=None), and the short-range detector: frames/s on --video,
     and the faces found there (frames with a face), on multi_face.jpg (faces) and on
     no_face.mp4 (frames with a face).
  1b. Small faces: recall by face width. Every face of the real photos (single_face.jpg,
     0-f1-su-ph.jpg, 15-f13-anc-ph.jpg, the five of multi_face.jpg) and of --video's first
     frame is cut out with its surroundings, scaled so that its landmark box is 24 ... 128 px
     wide, and pasted on no_face.mp4's frames resized to 640x360 and 1920x1080, in a
     --recall_frames-frame clip per face that starts at a random place (seeded) and drifts
     across the frame. A frame is found when the tracker yields a face whose box overlaps
     the pasted face's by IoU >= FOUND_IOU. Both the default detector (tiles) and the whole
     frame only, with the frames/s of each over all its clips; then the faces found on
     no_face.mp4 at its own size and resized to both sizes (every frame is a detection frame
     there: no face is tracked).
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
RECALL_WIDTHS = (24, 32, 48, 64, 96, 128)  # landmark-box widths of the pasted faces, pixels
RECALL_SIZES = ((640, 360), (1920, 1080))  # (width, height) of the composed clips
RECALL_PHOTOS = ("single_face.jpg", "0-f1-su-ph.jpg", "15-f13-anc-ph.jpg", "multi_face.jpg")
PATCH_SCALE = 1.6  # side of the pasted patch over the face's landmark width: hair and chin
FOUND_IOU = 0.3  # a tracked face this close to the pasted one is it
DRIFT_PX = 2.0  # the pasted face's speed, pixels a frame (someone walking at a distance)
BACKGROUNDS = 24  # no_face.mp4 frames used as backgrounds, resized once per size


def _define_flags() -> None:
  flags.DEFINE_string("video", "WolfgangLanger_Pexels.mp4", "A video of mlt_flax.assets.")
  flags.DEFINE_integer("detect_every", tracking.DEFAULT_DETECT_EVERY,
                       "BlazeFace runs every N frames while faces are tracked.")
  flags.DEFINE_integer("paper_frames", 192, "Frames of --video the paper's model predicts "
                       "(3 full batches of its 64: about 40 s a pass on 2 CPU cores).")
  flags.DEFINE_list("memory_frames", ["100", "1000"], "Lengths of the looped videos whose "
                    "peak RSS is measured.")
  flags.DEFINE_integer("recall_frames", 20, "Frames of each composed small-face clip.")
  flags.DEFINE_bool("face_finding_only", False, "Print tables 1 and 1b only.")


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


def _tracker(f, model: str = "full", **detector_kwargs) -> tracking.MultiFaceTracker:
  return tracking.MultiFaceTracker(face_models.FaceDetector(model, **detector_kwargs),
                                   face_models.FaceMesh(), detect_every=f.detect_every)


DEFAULT, WHOLE = ("BlazeFace full range + FaceMesh + align (default, tiles)",
                  "  the same, whole frame only (min_face=None)")


def face_finding(f, frames: list[np.ndarray], no_face: list[np.ndarray]) -> dict:
  """Prints table 1; returns its face finders by label."""
  photo = [media.read_image(assets.path("multi_face.jpg"))]
  finders = {"Haar cascade + box crop (every frame, one face)": faces.FaceCropper(),
             DEFAULT: _tracker(f), WHOLE: _tracker(f, min_face=None),
             "BlazeFace short range + FaceMesh + align (option)": _tracker(f, "short")}
  height, width = frames[0].shape[:2]
  tiles = len(finders[DEFAULT].detector.tiles(width, height))
  print(f"1. face finding on decoded frames; {f.video}: {len(frames)} frames of "
        f"{width}x{height} (default: {tiles} tiles beside the whole frame, faces down to "
        f"{face_models.DEFAULT_MIN_FACE:.0f} px); tflite runtime {face_models.interpreter_name()}")
  print(f"{'path':62s}{'frames/s':>9s}{'per CPU s':>10s}{'video':>7s}{'multi':>7s}"
        f"{'no_face':>9s}")
  for label, finder in finders.items():
    list(finder.track(frames[:2]))  # warm-up: first invocations allocate
    found = {}

    def run(finder=finder) -> int:
      found["video"] = _faces_found(finder, frames)
      return len(frames)
    _, fps, cpu_fps = timing.per_second_and_cpu_second(run)
    found = found["video"]
    print(f"{label:62s}{fps:9.1f}{cpu_fps:10.1f}{found:7d}{_faces_found(finder, photo):7d}"
          f"{_faces_found(finder, no_face):9d}")
  print(f"  (per CPU s: frames over the process's CPU seconds, what a core of its own would "
        f"give, near enough, when the machine is shared; video: frames with a face of "
        f"{len(frames)}; multi: faces found of the 5 of multi_face.jpg; no_face: frames with a "
        "face of no_face.mp4's)")
  return finders


def source_faces(first_frame: np.ndarray, whole) -> list[tuple[np.ndarray, np.ndarray]]:
  """(image, landmark box (x0, y0, x1, y1)) of every face of RECALL_PHOTOS and first_frame:
  the full-range detector on the whole image (the close-ups: the short-range one), FaceMesh's
  landmarks refined once; `whole` is a whole-frame tracker whose models are reused."""
  mesh = whole.mesh
  detectors = [whole.detector, face_models.FaceDetector("short")]
  found = []
  for image in [media.read_image(assets.path(n)) for n in RECALL_PHOTOS] + [first_frame]:
    detections = next((d for d in (det.detect(image) for det in detectors) if d), [])
    for detection in detections:
      landmarks = mesh.photo_landmarks(image, detection)
      if landmarks is not None:
        found.append((image, np.concatenate([landmarks[:, :2].min(0), landmarks[:, :2].max(0)])))
  return found


def _patch(image, box, width: int) -> tuple[np.ndarray, tuple[float, float, float, float]]:
  """The face of image at landmark box, with its surroundings, scaled so that the box is
  `width` px wide; and the box in the patch's pixels (x, y, w, h)."""
  x0, y0, x1, y1 = box
  half = PATCH_SCALE * (x1 - x0) / 2
  cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
  left, top = max(0, round(cx - half)), max(0, round(cy - half))
  right = min(image.shape[1], round(cx + half))
  bottom = min(image.shape[0], round(cy + half))
  scale = width / (x1 - x0)
  size = (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale)))
  patch = cv2.resize(image[top:bottom, left:right], size,
                     interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
  return patch, ((x0 - left) * scale, (y0 - top) * scale, width, (y1 - y0) * scale)


def recall_clip(backgrounds, image, box, width: int, rng: np.random.Generator, num_frames: int):
  """num_frames frames of one face pasted at a random place, drifting at DRIFT_PX a frame
  (bouncing off the frame's edges); and its true box (x, y, w, h) on each frame."""
  patch, (bx, by, bw, bh) = _patch(image, box, width)
  height, width_px = backgrounds[0].shape[:2]
  room = np.array([width_px - patch.shape[1], height - patch.shape[0]], float)
  position = rng.uniform(0, 1, 2) * room
  velocity = DRIFT_PX * np.array([np.cos(a := rng.uniform(0, 2 * np.pi)), np.sin(a)])
  start = int(rng.integers(len(backgrounds)))
  frames, truth = [], []
  for i in range(num_frames):
    x, y = (int(v) for v in np.round(position))
    frame = backgrounds[(start + i) % len(backgrounds)].copy()
    frame[y:y + patch.shape[0], x:x + patch.shape[1]] = patch
    frames.append(frame)
    truth.append((x + bx, y + by, bw, bh))
    velocity = np.where((position + velocity < 0) | (position + velocity > room), -velocity,
                        velocity)
    position = np.clip(position + velocity, 0, room)
  return frames, truth


def _frames_found(tracker, frames, truth) -> int:
  """Frames on which tracker yields a face at the true box."""
  hits = set()
  for record in tracker.track(frames):
    if record.face is not None and faces.iou(record.box, [truth[record.index - 1]])[0] >= (
        FOUND_IOU):
      hits.add(record.index)
  return len(hits)


def small_faces(f, frames: list[np.ndarray], no_face: list[np.ndarray], finders: dict) -> None:
  """Prints table 1b with table 1's default and whole-frame trackers."""
  trackers = {"tiles": finders[DEFAULT], "whole": finders[WHOLE]}
  sources = source_faces(frames[0], trackers["whole"])
  found = {}  # (size, tracker, width) -> frames found
  speed = {}  # (size, tracker) -> frames/s over all the clips
  cpu_speed = {}  # (size, tracker) -> frames per CPU second over all the clips
  for size in RECALL_SIZES:
    backgrounds = [cv2.resize(b, size, interpolation=cv2.INTER_AREA) for b in no_face[:BACKGROUNDS]]
    clips = {width: [recall_clip(backgrounds, image, box, width, np.random.default_rng(
        [width, size[0], i]), f.recall_frames) for i, (image, box) in enumerate(sources)]
             for width in RECALL_WIDTHS}
    for name, tracker in trackers.items():
      list(tracker.track(clips[RECALL_WIDTHS[0]][0][0][:2]))  # warm-up
      def run(name=name, tracker=tracker) -> int:
        for width, per_face in clips.items():
          found[size, name, width] = sum(_frames_found(tracker, *clip) for clip in per_face)
        return sum(len(clip[0]) for per_face in clips.values() for clip in per_face)
      _, speed[size, name], cpu_speed[size, name] = timing.per_second_and_cpu_second(run)
    del clips, backgrounds
  total = len(sources) * f.recall_frames
  print(f"\n1b. small faces: frames found of {total} ({len(sources)} real faces x "
        f"{f.recall_frames} frames) by face width; tiles = the default detector (faces down "
        f"to {face_models.DEFAULT_MIN_FACE:.0f} px), whole = min_face=None")
  head = "".join(f"{f'{w}x{h} {n}':>16s}" for w, h in RECALL_SIZES for n in trackers)
  print(f"{'face width (landmark box)':28s}{head}")
  for width in RECALL_WIDTHS:
    row = "".join(f"{100 * found[size, n, width] / total:15.1f}%" for size in RECALL_SIZES
                  for n in trackers)
    print(f"{f'{width} px':28s}{row}")
  print(f"{'frames/s over all clips':28s}" + "".join(
      f"{speed[size, n]:16.1f}" for size in RECALL_SIZES for n in trackers))
  print(f"{'frames per CPU s':28s}" + "".join(
      f"{cpu_speed[size, n]:16.1f}" for size in RECALL_SIZES for n in trackers))
  detector = trackers["tiles"].detector
  sizes = {"no_face.mp4 as it is": None, **{f"no_face.mp4 at {w}x{h}": (w, h)
                                            for w, h in RECALL_SIZES}}
  for label, size in sizes.items():
    video = no_face if size is None else [cv2.resize(b, size, interpolation=cv2.INTER_AREA)
                                          for b in no_face]
    calls = detector.network_calls
    print(f"{label:28s}{_faces_found(trackers['tiles'], video):5d} frames with a face of "
          f"{len(video)} (tiles; {detector.network_calls - calls} network calls)")


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
  no_face = list(media.read_video(assets.path("no_face.mp4")))
  finders = face_finding(f, frames, no_face)
  small_faces(f, frames, no_face, finders)
  if f.face_finding_only:
    return
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
