"""predict's run: an input through a backend into the outputs, with a short terminal story."""

import pathlib
import time
from typing import Iterator

import numpy as np

from mlt_flax import console
from mlt_flax import media
from mlt_flax import tracking
from mlt_flax.predict import annotation
from mlt_flax.predict import backends
from mlt_flax.predict import inputs
from mlt_flax.predict import outputs

PROGRESS_FRACTION = 1.0  # in a log or pipe: one line when done (per-video lines tell the rest)


def load_backend(workdir=None, checkpoint: str = "best", model=None) -> backends.Backend:
  """The ONNX Runtime backend of an export folder (`model`; imports no JAX, no TensorFlow),
  else the JAX backend of a run's checkpoint."""
  if model is not None:
    return backends.OnnxBackend(model)
  console.quiet_native_logs()  # the JAX backend brings TensorFlow (the input pipeline) in
  from mlt_flax.predict import jax_backend  # pylint: disable=g-import-not-at-top
  console.libraries_loaded()
  return jax_backend.JaxBackend(workdir, checkpoint)


def _predictions_of_media(backend: backends.Backend, media_inputs: dict, finder, heatmap_frames,
                          *, single: bool, skipped: list) -> Iterator[outputs.VideoPrediction]:
  """Each video or photo through the face finder and the backend, a progress line over all
  their frames (the total from the headers, settled on the frames read as each video ends).
  single: a bad file is an error; else it is reported, listed in skipped and passed over."""
  counts = {name: inputs.frame_count(path) for name, path in media_inputs.items()}
  progress = console.Progress(sum(counts.values()), label="frame", fraction=PROGRESS_FRACTION)
  start = 0
  for k, (name, path) in enumerate(media_inputs.items(), start=1):
    try:
      frames = media.read_frames(path)  # a bad file raises here, before any frame is used
    except media.FaceInputError as e:
      if single:
        raise
      progress.total -= counts[name]
      progress.interrupt()
      print(f"skipped {path}: {e}")
      skipped.append((path, str(e)))
      continue
    progress.note(f"{name} ({k}/{len(media_inputs)})")
    t0 = time.perf_counter()
    counted = inputs.Counted(frames, progress, start)
    pred = backend.run(finder.track(counted), name, heatmap_frames, source=path)
    pred.seconds = time.perf_counter() - t0
    progress.total += counted.read - counts[name]  # the frames it held, not its header's count
    start += counted.read
    progress(start)
    if start < progress.total:
      progress.interrupt()  # the video's summary line goes below a line that is not done
    yield pred


def _predictions_of_folders(backend, path: pathlib.Path, heatmap_frames, *, abaw: bool,
                            frame_counts=None, source_videos=None):
  """Each video of a cropped_aligned-style folder, over every frame of its source video when
  its count is known (inputs.frame_counts), else up to its highest crop number."""
  videos = inputs.folder_videos(path)
  counts = inputs.frame_counts(videos, path, stated=frame_counts,
                               source_videos=None if source_videos is None
                               else pathlib.Path(source_videos))
  short = [n for n, (count, _) in counts.items() if count is None]
  if short and abaw:
    print(f"warning: no frame count for {len(short)} video(s) ({', '.join(short[:3])}"
          f"{', ...' if len(short) > 3 else ''}): their ABAW files end at the highest crop "
          "number; give --frame_counts or --source_videos, or keep the layout's "
          "AU_Detection_Challenge annotation files beside cropped_aligned/")
  for name, folder in videos.items():
    yield backend.run(inputs.folder_frames(folder, counts[name][0]), name, heatmap_frames)


def predict(workdir, input_path: str, output, *, checkpoint="best", model=None,
            **options) -> list[dict]:
  """Runs a checkpoint on `input_path`; writes CSVs/ABAW/plots into `output`; returns summaries.

  model: an export folder (mlt_flax.export) to run with ONNX Runtime instead (workdir unused).
  options: predict_with's.
  """
  detector = options.get("detector", inputs.DEFAULT_DETECTOR)
  if detector not in inputs.DETECTORS:
    raise ValueError(f"--detector must be one of {sorted(inputs.DETECTORS)}, got {detector!r}")
  backend = load_backend(workdir, checkpoint, model)
  return predict_with(backend, input_path, output, **options)


def predict_with(backend: backends.Backend, input_path: str, output, *, smooth=False,
                 abaw=False, heatmap_frames=(), timeline=False,
                 detector=inputs.DEFAULT_DETECTOR, detect_every=tracking.DEFAULT_DETECT_EVERY,
                 annotated_video=False, thresholds="tuned", frame_counts=None,
                 source_videos=None, caption=None) -> list[dict]:
  """predict() with a backend already built: several inputs can share its compiled function.

  detector, detect_every: the face finder for videos and photos (inputs.face_finder).
  annotated_video: also draw the faces and their AUs into a copy of each video and photo,
    with `caption` along the bottom of each frame when given.
  thresholds: 'tuned' (the run's or the export's shipped thresholds and window, when there
    are; else fixed, with a warning) or 'fixed' (config.eval.threshold; smooth: the config's
    window). What was used is printed and written to <output>/thresholds.json.
  frame_counts, source_videos: frame counts of cropped_aligned videos (inputs.frame_counts).
  """
  out = pathlib.Path(output)
  config, names = backend.config, backend.au_names
  decisions, warning = outputs.choose_decisions(
      thresholds, backend.shipped, names, default_threshold=config.eval.threshold,
      config_window=config.eval.smoothing_window, smooth=smooth, where=backend.shipped_where)
  if warning:
    print(warning)
  print(decisions.describe())
  skipped, ignored = [], []
  t0 = time.perf_counter()
  if input_path.startswith("tfds:"):
    predictions = iter(backend.split_predictions(input_path[len("tfds:"):]))
  else:
    path = pathlib.Path(input_path)
    if path.is_dir() and inputs.is_frame_layout(path):
      predictions = _predictions_of_folders(backend, path, heatmap_frames, abaw=abaw,
                                            frame_counts=frame_counts,
                                            source_videos=source_videos)
    else:
      if path.is_dir():
        media_inputs, ignored = inputs.media_inputs(path)
      else:
        media.check_path(path, media.MEDIA_EXTENSIONS, media.MEDIA_KINDS)
        media_inputs = {path.stem: path}
      finder = inputs.face_finder(detector, backend.frame_size, detect_every)
      predictions = _predictions_of_media(backend, media_inputs, finder, heatmap_frames,
                                          single=not path.is_dir(), skipped=skipped)
  summaries, total = [], 0
  decisions.write(out, names)
  for pred in predictions:
    series = outputs.face_series(pred, decisions.window)  # each face, filled and smoothed
    s = outputs.write_outputs(pred, series, out, names, decisions, abaw=abaw)
    s["thresholds"] = decisions.mode
    total += s["frames"]
    if not pred.face_found.any():
      s["warning"] = "no face found in any frame"
      print(f"warning: {pred.name}: no face found in any frame; every row has face_found=0")
    if timeline or pred.crops:
      from mlt_flax import plots  # pylint: disable=g-import-not-at-top  (matplotlib, on demand)
    if timeline:
      for f in series:
        plots.au_timeline(f.frames, np.nan_to_num(f.probs), f.found, names,
                          out / f"{pred.name}{f.suffix}_timeline.png",
                          title=f"{pred.name}{f.suffix}: AU probabilities per frame")
    suffix = {f.face_id: f.suffix for f in series}
    for (frame, face_id), (probs, att) in backend.attention_maps(pred.crops).items():
      name = f"{pred.name}{suffix.get(face_id, '')}"
      plots.attention_heatmaps(pred.crops[(frame, face_id)], att, probs, names,
                               out / f"{name}_frame{frame:05d}_attention.png",
                               title=f"{name}, frame {frame}: cross-attention per AU")
    if annotated_video and pred.source is not None:
      s["annotated"] = str(annotation.write_annotated(pred, series, out, names, decisions,
                                                           caption))
    if pred.seconds is not None:
      print(f"{pred.name}: {s['frames']} frames, {s['faces']} face(s) found, "
            f"{s['frames_with_face']} frames with a face, "
            f"{s['frames'] / max(pred.seconds, 1e-9):.1f} frames/s")
    summaries.append(s)
  elapsed = time.perf_counter() - t0
  print(f"predicted {total} frames of {len(summaries)} video(s) in {elapsed:.1f}s "
        f"({total / max(elapsed, 1e-9):.1f} frames/s, checkpoint step {backend.step}, "
        f"thresholds {decisions.mode}); outputs in {out}")
  if skipped:
    print(f"skipped {len(skipped)} unreadable file(s): " +
          "; ".join(f"{p} ({why})" for p, why in skipped))
  if ignored:
    print(f"ignored {len(ignored)} file(s) that are not videos or photos: " +
          ", ".join(str(p) for p in ignored))
  return summaries
