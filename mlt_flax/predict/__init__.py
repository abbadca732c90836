"""Batch inference on your own footage: per-face AU probabilities, CSVs, ABAW files.

  python -m mlt_flax.predict --workdir=RUN [--checkpoint=best] --input=PATH --output=DIR
                             [--thresholds=tuned|fixed] [--smooth] [--abaw]
                             [--heatmap_frames=1,40] [--timeline] [--annotated_video]
                             [--detector=blazeface|blazeface_short|haar]
                             [--frame_counts=VIDEO:N,...] [--source_videos=DIR]
  python -m mlt_flax.predict --model=EXPORTED --input=PATH --output=DIR [...]

--model runs a folder written by `python -m mlt_flax.export` with ONNX Runtime instead of a
run's checkpoint with JAX: the same outputs, no attention heatmaps, no tfds: input, and
neither JAX nor TensorFlow imported (--model=EXPORTED/model.int8.onnx: the INT8 model).

--thresholds=tuned (default): the per-AU thresholds and smoothing window that `evaluate`
scored and ships (<workdir>/eval_validation/report.json, or the export's metadata.json),
when there are; else, with one warning line, fixed: config.eval.threshold for every AU (and,
with --smooth, config.eval.smoothing_window). The terminal and <output>/thresholds.json say
which was used.

--input is one of:
  * a video or a photo (.mp4, .mov, .avi, .jpg, .png, ...): every face is detected, tracked
    with a stable id and aligned like Aff-Wild2's training frames (mlt_flax/tracking.py;
    --detector=haar: the main face only, in a Haar-cascade box, mlt_flax/faces.py);
  * a folder of videos and photos, searched recursively: each file as above, outputs named by
    its path under the folder; a file that cannot be read is reported and skipped;
  * a folder of cropped face frames in the Aff-Wild2 layout: `cropped_aligned/<video>/*.jpg`,
    `<video>/*.jpg` folders, or one folder of `<frame>.jpg` files (frame number = file name);
    a frame number missing from the sequence is a frame with no face, and a video's frames
    run to its source video's frame count (--frame_counts, the video in --source_videos, or
    the layout's AU_Detection_Challenge/<set>/<video>.txt annotation file), faceless frames
    at the end included: one ABAW line per frame of the video;
  * `tfds:SPLIT` (e.g. tfds:validation): every frame of that split of the run's dataset.
Frames with no face are kept and marked (face_found = 0), never dropped.

Modules: inputs (what it reads, the face finder), backends (the backend protocol and ONNX
Runtime's), jax_backend (a run's checkpoint), outputs (records, CSV, ABAW, thresholds),
annotation (--annotated_video), run (the pipeline), __main__ (the CLI).

One compiled function serves the whole run: a fixed batch shape (the last batch padded),
sharded over all local devices, while a background thread decodes, tracks and aligns the
next batch of faces (batches run across frames, so several faces or short clips fill them).
Outputs per video, in --output (docs/faces.md has the formats):
  <video>.csv    a row per face per frame (and one row, face_found = 0, per frame without a
                 face): frame, face_found, p_<AU>..., <AU> 0/1, face_id, the face's box and
                 its five alignment points;
  abaw/<video>.txt  with --abaw, the challenge's submission file per face: <video>.txt for
                 one face, <video>_left.txt and <video>_right.txt for two (left and right by
                 where each face is on average), <video>_face<id>.txt each for more;
  <video>[_left|_right|_face<id>]_timeline.png  with --timeline, per face;
  <video>_annotated.mp4  with --annotated_video: the video with each face's box, id and AU
                 probability bars drawn in (<video>_annotated.jpg for a photo);
  per-AU cross-attention heatmaps of the frames --heatmap_frames names.
"""

from mlt_flax.predict.backends import Backend
from mlt_flax.predict.backends import OnnxBackend
from mlt_flax.predict.inputs import DEFAULT_DETECTOR
from mlt_flax.predict.inputs import DETECTORS
from mlt_flax.predict.inputs import face_finder
from mlt_flax.predict.outputs import VideoPrediction
from mlt_flax.predict.run import load_backend
from mlt_flax.predict.run import predict
from mlt_flax.predict.run import predict_with


def __getattr__(name):
  """`Predictor` / `JaxBackend`: the JAX backend, imported on first use (it brings JAX and
  TensorFlow; the ONNX Runtime path never touches it)."""
  if name in ("Predictor", "JaxBackend"):
    from mlt_flax.predict import jax_backend  # pylint: disable=g-import-not-at-top
    return jax_backend.JaxBackend
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
