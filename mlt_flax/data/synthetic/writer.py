"""Writing a synthetic dataset: plan the videos, render and store each one, summarise.

``plan_videos`` names the videos of both splits and gives each its random stream;
``write_video`` renders one into the Aff-Wild2 layout (``layout``); ``generate`` writes them
all, in parallel worker processes if asked, and records the parameters and a summary in
``generator.json``, so that a rerun with the same parameters is skipped.

Everything is drawn from ``np.random.default_rng((seed, split, video, person))``, so the same
seed gives byte-identical label files and images, whatever the number of workers.
"""

import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import pathlib
import shutil
import time
from typing import Any

import cv2
import numpy as np

from mlt_flax import aus
from mlt_flax.data import affwild2_format as affwild2
from mlt_flax.data.synthetic.config import SyntheticConfig
from mlt_flax.data.synthetic.identity import Camera, Identity, sample_camera, sample_identity
from mlt_flax.data.synthetic.layout import (AU_ORDER, FIRST_FRAME, FRAME_NAME, IMAGES_DIR,
                                            LABELS_DIR, NOT_ANNOTATED, PAIR_SUFFIXES,
                                            PARAMS_FILENAME, SPLIT_DIRS)
from mlt_flax.data.synthetic.render import render_background, render_frame
from mlt_flax.data.synthetic.script import Script, simulate_script

# Bumped whenever the renderer or the script sampler changes what a seed produces.
GENERATOR_VERSION = 1
# How worker processes start. Not "fork": it copies a parent whose threads (JAX's, TF's) may
# hold locks, and can deadlock. A forkserver is a fresh, single-threaded interpreter that forks
# the workers (about 0.3 s to start two; "spawn", a fresh interpreter each, where it is missing).
WORKER_START_METHOD = ("forkserver" if "forkserver" in multiprocessing.get_all_start_methods()
                       else "spawn")


@dataclasses.dataclass(frozen=True)
class VideoSpec:
  """One video to write: its name, split and the keys of its random stream."""
  name: str
  split: str  # "train", "validation" or "test"
  num_frames: int
  seed_key: tuple[int, ...]  # (seed, split code, slot, person)


_SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}


def plan_videos(seed: int, config: SyntheticConfig = SyntheticConfig()) -> list[VideoSpec]:
  """The videos of every split: names, lengths and random-stream keys.

  Each split is a list of slots; the last ``pair_fraction`` of the videos are two-person slots
  written as ``<id>_left`` / ``<id>_right`` (same length, different people). Keys depend on
  (seed, split, slot) only, so growing one split never changes the other.
  """
  specs = []
  for split, count in (("train", config.num_train_videos),
                       ("validation", config.num_val_videos),
                       ("test", config.num_test_videos)):
    code = _SPLIT_CODES[split]
    num_pairs = int(round(count * config.pair_fraction / 2))
    if config.pair_fraction > 0 and count >= 2:
      num_pairs = max(num_pairs, 1)
    num_single = count - 2 * num_pairs
    for slot in range(num_single + num_pairs):
      rng = np.random.default_rng((seed, code, slot))
      jitter = config.frames_jitter * config.frames_per_video
      num_frames = int(rng.integers(round(config.frames_per_video - jitter),
                                    round(config.frames_per_video + jitter) + 1))
      num_frames = max(num_frames, 1)
      base = f"{config.video_prefix}_{split[:5]}_{slot:03d}"
      if slot < num_single:
        specs.append(VideoSpec(base, split, num_frames, (seed, code, slot, 0)))
      else:
        for person, suffix in enumerate(PAIR_SUFFIXES):
          specs.append(VideoSpec(base + suffix, split, num_frames,
                                 (seed, code, slot, person + 1)))
  return specs


def make_video(spec: VideoSpec, config: SyntheticConfig = SyntheticConfig()
               ) -> tuple[Identity, Camera, Script, np.random.Generator]:
  """The person, camera and script of one video, and the generator left for its noise."""
  rng = np.random.default_rng(spec.seed_key)
  ident = sample_identity(rng, config)
  camera = sample_camera(rng, config)
  script = simulate_script(rng, spec.num_frames, config)
  return ident, camera, script, rng


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
  """(H, W, 3) uint8 RGB -> JPEG bytes (deterministic for a given libjpeg)."""
  ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]),
                         [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
  if not ok:
    raise RuntimeError("JPEG encoding failed")
  return buf.tobytes()


def write_video(out_dir: str | os.PathLike, spec: VideoSpec,
                config: SyntheticConfig = SyntheticConfig()) -> dict[str, Any]:
  """Renders one video into the Aff-Wild2 layout under out_dir; returns its counts."""
  out = pathlib.Path(out_dir)
  ident, camera, script, rng = make_video(spec, config)
  label_path = out / LABELS_DIR / SPLIT_DIRS[spec.split] / f"{spec.name}.txt"
  label_path.parent.mkdir(parents=True, exist_ok=True)
  label_path.write_text(affwild2.format_labels(script.labels))
  frame_dir = out / IMAGES_DIR / spec.name
  frame_dir.mkdir(parents=True, exist_ok=True)
  background = render_background(ident, config.image_size)
  for t in np.flatnonzero(script.face_present):
    image = render_frame(ident, camera, script, int(t), rng, config, background)
    (frame_dir / FRAME_NAME.format(int(t) + FIRST_FRAME)).write_bytes(
        encode_jpeg(image, camera.jpeg_quality))
  return {
      "name": spec.name, "split": spec.split, "frames": spec.num_frames,
      "images": int(script.face_present.sum()),
      "positives": (script.labels == 1).sum(axis=0).tolist(),
      "annotated": (script.labels != NOT_ANNOTATED).sum(axis=0).tolist(),
  }


def _params(seed: int, config: SyntheticConfig) -> dict[str, Any]:
  """The JSON-normalised identity of a generation (what makes two runs produce the same data)."""
  params = {"version": GENERATOR_VERSION, "seed": seed, "config": dataclasses.asdict(config)}
  if not config.num_test_videos:  # a generation without a test split keeps its identity
    del params["config"]["num_test_videos"]
  return json.loads(json.dumps(params))


def _summarise(videos: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
  names = aus.names(AU_ORDER)
  summary: dict[str, Any] = {"seconds": round(seconds, 2), "splits": {}}
  for split in SPLIT_DIRS:
    vs = [v for v in videos if v["split"] == split]
    if not vs and split in affwild2.OPTIONAL_SPLITS:
      continue
    pos = np.sum([v["positives"] for v in vs], axis=0) if vs else np.zeros(len(names))
    ann = np.sum([v["annotated"] for v in vs], axis=0) if vs else np.zeros(len(names))
    summary["splits"][split] = {
        "videos": len(vs),
        "pairs": sum(v["name"].endswith(PAIR_SUFFIXES[0]) for v in vs),
        "frames": int(sum(v["frames"] for v in vs)),
        "images": int(sum(v["images"] for v in vs)),
        "positive_rate": {n: round(float(p / max(a, 1)), 4)
                          for n, p, a in zip(names, pos, ann)},
    }
  return summary


def generate(out_dir: str | os.PathLike, *, seed: int = 0,
             num_train_videos: int | None = None, num_val_videos: int | None = None,
             num_test_videos: int | None = None, frames_per_video: int | None = None, image_size: int | None = None,
             config: SyntheticConfig | None = None, num_workers: int = 1,
             overwrite: bool = False) -> dict[str, Any]:
  """Writes a synthetic Aff-Wild2-layout dataset into out_dir (idempotent).

  Args:
    out_dir: the dataset root (gets ``cropped_aligned/``, ``AU_Detection_Challenge/``,
      ``generator.json``).
    seed: the dataset's seed.
    num_train_videos, num_val_videos, num_test_videos, frames_per_video, image_size: override
      these fields of
      ``config``.
    config: every other parameter; ``SyntheticConfig()`` by default.
    num_workers: processes rendering videos in parallel (the output does not depend on it).
      They start fresh (``WORKER_START_METHOD``) and import the caller's main module, so a
      script that calls ``generate`` with workers keeps its own work under
      ``if __name__ == "__main__":``.
    overwrite: replace a folder of real (non-generated) data in the way; off by default.

  Returns:
    The summary: per split the number of videos, pairs, frames, images, and the positive rate
    of each AU (over annotated frames); ``"skipped": True`` if out_dir already held exactly
    this generation.
  """
  config = config or SyntheticConfig()
  overrides = {k: v for k, v in dict(
      num_train_videos=num_train_videos, num_val_videos=num_val_videos,
      num_test_videos=num_test_videos, frames_per_video=frames_per_video,
      image_size=image_size).items() if v is not None}
  config = dataclasses.replace(config, **overrides)
  out = pathlib.Path(out_dir)
  params = _params(seed, config)
  params_path = out / PARAMS_FILENAME
  if params_path.exists():
    previous = json.loads(params_path.read_text())
    if previous.get("params") == params:
      return {**previous["summary"], "skipped": True}
    params_path.unlink()  # our own older generation: regenerate in place
  elif not overwrite and any((out / d).exists() for d in (IMAGES_DIR, LABELS_DIR)):
    raise FileExistsError(
        f"{out} holds {IMAGES_DIR}/ or {LABELS_DIR}/ but no {PARAMS_FILENAME}: it may be real "
        "data; pass overwrite=True (--overwrite) to replace it")
  for d in (IMAGES_DIR, LABELS_DIR):
    shutil.rmtree(out / d, ignore_errors=True)
  out.mkdir(parents=True, exist_ok=True)

  start = time.perf_counter()
  specs = plan_videos(seed, config)
  if num_workers > 1:
    context = multiprocessing.get_context(WORKER_START_METHOD)
    with concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=context) as pool:
      videos = list(pool.map(write_video, [out] * len(specs), specs, [config] * len(specs)))
  else:
    videos = [write_video(out, spec, config) for spec in specs]
  summary = _summarise(videos, time.perf_counter() - start)
  params_path.write_text(json.dumps({"params": params, "summary": summary}, indent=1) + "\n")
  return {**summary, "skipped": False}
