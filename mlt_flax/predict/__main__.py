"""`python -m mlt_flax.predict`: the command line (mlt_flax/predict/__init__.py says what)."""

from absl import flags

from mlt_flax import cli
from mlt_flax import tracking
from mlt_flax.predict import inputs
from mlt_flax.predict import outputs
from mlt_flax.predict import run

FLAGS = flags.FLAGS


def define_flags():
  """The CLI's flags (defined only when run as a program, so the module imports cleanly)."""
  flags.DEFINE_string("workdir", None, "The training run whose checkpoint to use.")
  flags.DEFINE_string("model", None, "Instead of --workdir: a folder written by "
                      "`python -m mlt_flax.export` (or its model.int8.onnx), run with ONNX "
                      "Runtime.")
  flags.mark_flags_as_mutual_exclusive(["workdir", "model"], required=True)
  flags.DEFINE_string("checkpoint", "best", "'best' (by validation mean F1), 'latest' or a "
                      "step number.")
  flags.DEFINE_string("input", None, "A video or photo, a folder of them (searched "
                      "recursively), a folder of face frames (cropped_aligned layout), or "
                      "tfds:SPLIT.", required=True)
  flags.DEFINE_string("output", None, "Output folder.", required=True)
  flags.DEFINE_enum("thresholds", "tuned", outputs.THRESHOLD_MODES, "tuned: the per-AU "
                    "thresholds and window evaluate scored and ships, when there are (else "
                    "fixed, with a warning); fixed: config.eval.threshold.")
  flags.DEFINE_bool("smooth", False, "With --thresholds=fixed: smooth probabilities within "
                    "each video (the config's eval.smoothing_window).")
  flags.DEFINE_bool("abaw", False, "Also write the ABAW3 submission format (abaw/<video>.txt, "
                    "one file per face).")
  flags.DEFINE_list("heatmap_frames", [], "Frame numbers to draw attention heatmaps for.")
  flags.DEFINE_bool("timeline", False, "Draw an AU timeline per face of each video.")
  flags.DEFINE_bool("annotated_video", False, "Also write <video>_annotated.mp4: the video with "
                    "each face's box, id and AU probability bars drawn in.")
  flags.DEFINE_enum("detector", inputs.DEFAULT_DETECTOR, sorted(inputs.DETECTORS), "Face "
                    "finder for videos and photos: blazeface (every face, tracked, 5-point "
                    "aligned; BlazeFace full range), blazeface_short (the short-range model: "
                    "close faces only), haar (the main face only, OpenCV's Haar cascade, no "
                    "alignment).")
  flags.DEFINE_integer("detect_every", tracking.DEFAULT_DETECT_EVERY, "With blazeface: run "
                       "the detector every N frames (faces in between are followed by their "
                       "landmarks); a face walking in is found within N frames (one small enough to need the "
                       "tiles within 3N: docs/faces.md).")
  flags.DEFINE_list("frame_counts", [], "For a cropped_aligned folder: VIDEO:N,... the frame "
                    "count of each video's source (its ABAW file gets N lines).")
  flags.DEFINE_string("source_videos", None, "For a cropped_aligned folder: the folder of the "
                      "source videos, whose headers give each video's frame count.")


def frame_counts(items) -> dict[str, int]:
  """--frame_counts=VIDEO:N,... -> {VIDEO: N}; a one-line ValueError for a bad item."""
  counts = {}
  for item in items:
    name, _, n = item.rpartition(":")
    if not name or not n.isdigit():
      raise ValueError(f"--frame_counts: {item!r}; expected VIDEO:N (N frames)")
    counts[name] = int(n)
  return counts


def run_cli():
  run.predict(FLAGS.workdir, FLAGS.input, FLAGS.output, checkpoint=FLAGS.checkpoint,
              model=FLAGS.model, thresholds=FLAGS.thresholds, smooth=FLAGS.smooth,
              abaw=FLAGS.abaw, timeline=FLAGS.timeline,
              heatmap_frames={int(f) for f in FLAGS.heatmap_frames},
              detector=FLAGS.detector, detect_every=FLAGS.detect_every,
              annotated_video=FLAGS.annotated_video,
              frame_counts=frame_counts(FLAGS.frame_counts), source_videos=FLAGS.source_videos)


if __name__ == "__main__":
  cli.main(define_flags, run_cli, log_dir=lambda: FLAGS.output)
