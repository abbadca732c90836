"""What predict reads: the face finder for videos and photos, and the inputs it accepts.

  face_finder(detector)     BlazeFace + FaceMesh tracking (every face) or Haar (the main one)
  is_frame_layout(path)     a folder of face crops in the Aff-Wild2 layout
  folder_videos(root)       video name -> its folder of <frame>.jpg crops
  frame_counts(...)         each such video's frame count: stated, from its source video, or
                            from the split's annotation file (one line per frame)
  folder_frames(folder, n)  Frame records for frames 1..n, faceless where no crop exists
  media_inputs(root)        output name -> video or photo, under a folder
"""

import pathlib
from typing import Iterable, Iterator

import numpy as np

from mlt_flax import console
from mlt_flax import face_models
from mlt_flax import faces
from mlt_flax import media
from mlt_flax import tracking

# --detector: the face finder for videos and photos. BlazeFace full range is the default: on
# the test assets it found all 5 faces of multi_face.jpg where the short-range model found
# none (at the 0.7 score threshold), and every frame's face of WolfgangLanger_Pexels.mp4 at
# 351 frames/s with tracking and alignment, against 392 for short range (docs/faces.md).
DETECTORS = {"blazeface": "full", "blazeface_short": "short", "haar": None}
DEFAULT_DETECTOR = "blazeface"
# Where the Aff-Wild2 layout keeps the AU annotation files beside cropped_aligned/: one
# header line, then one line per frame of the source video.
ANNOTATION_GLOB = "AU_Detection_Challenge/*/{video}.txt"
TWO_FACE_SUFFIXES = ("_left", "_right")  # Aff-Wild2's names of a two-person video's faces


def face_finder(detector: str = DEFAULT_DETECTOR, crop_size: int = faces.DEFAULT_CROP_SIZE,
              detect_every: int = tracking.DEFAULT_DETECT_EVERY):
  """The --detector's face finder: a tracking.MultiFaceTracker (BlazeFace) or a
  faces.FaceCropper (Haar); either turns RGB frames into Frame records with .track()."""
  if detector not in DETECTORS:
    raise ValueError(f"--detector must be one of {sorted(DETECTORS)}, got {detector!r}")
  if DETECTORS[detector] is None:
    return faces.FaceCropper(crop_size=crop_size)
  return tracking.MultiFaceTracker(face_models.FaceDetector(DETECTORS[detector]),
                                   face_models.FaceMesh(), detect_every=detect_every,
                                   crop_size=crop_size)


def is_frame_folder(folder: pathlib.Path) -> bool:
  """A folder of face frames: it holds images, all named by their frame number."""
  stems = [p.stem for p in folder.iterdir() if p.suffix.lower() in media.IMAGE_EXTENSIONS]
  return bool(stems) and all(s.isdigit() for s in stems)


def is_frame_layout(root: pathlib.Path) -> bool:
  """The Aff-Wild2 layout: cropped_aligned/, a frame folder, or sub-folders of frames (and
  no video or photo of its own)."""
  if (root / "cropped_aligned").is_dir() or is_frame_folder(root):
    return True
  entries = list(root.iterdir())
  if any(p.is_file() and p.suffix.lower() in media.MEDIA_EXTENSIONS for p in entries):
    return False
  return any(d.is_dir() and is_frame_folder(d) for d in entries)


def folder_videos(root: pathlib.Path) -> dict[str, pathlib.Path]:
  """Video name -> folder of frame files, for the accepted folder layouts."""
  if (root / "cropped_aligned").is_dir():
    root = root / "cropped_aligned"
  has_frames = lambda d: any(p.suffix.lower() in media.IMAGE_EXTENSIONS for p in d.iterdir())
  if has_frames(root):
    return {root.name: root}
  videos = {d.name: d for d in sorted(root.iterdir()) if d.is_dir() and has_frames(d)}
  if not videos:
    raise media.FaceInputError(f"{root}: no frame images (<frame>.jpg) in it or in its "
                               "sub-folders; expected the Aff-Wild2 cropped_aligned layout")
  return videos


def frame_counts(videos: dict[str, pathlib.Path], root: pathlib.Path, *,
                 stated: dict[str, int] | None = None,
                 source_videos: pathlib.Path | None = None) -> dict[str, tuple[int | None, str]]:
  """Video name -> (its frame count, where the count comes from), or (None, why not).

  In order: `stated` (--frame_counts), the source video's header in `source_videos` (a
  two-person video's _left and _right crops share one), the split's annotation file beside
  cropped_aligned/ (ANNOTATION_GLOB: a header line, then one line per frame).
  """
  stated = stated or {}
  # The layout's root: the input itself, or above it for cropped_aligned[/<video>].
  bases = [root, *list(root.parents)[:2]]
  out = {}
  for name in videos:
    if name in stated:
      out[name] = (int(stated[name]), "--frame_counts")
      continue
    if source_videos is not None:
      stem = name
      for suffix in TWO_FACE_SUFFIXES:
        stem = stem.removesuffix(suffix)
      found = [p for p in pathlib.Path(source_videos).glob(f"{stem}.*") if media.is_video(p)]
      if found:
        out[name] = (media.video_info(found[0])["frames"], str(found[0]))
        continue
    labels = sorted(p for base in bases for p in base.glob(ANNOTATION_GLOB.format(video=name)))
    if labels:
      with open(labels[0]) as f:
        out[name] = (sum(1 for line in f if line.strip()) - 1, str(labels[0]))
      continue
    out[name] = (None, "no stated count, source video or annotation file")
  return out


def folder_frames(folder: pathlib.Path, num_frames: int | None = None) -> Iterator[faces.Frame]:
  """Frames 1..num_frames of a folder of <frame>.jpg crops (default: up to the highest crop
  number); a frame without its crop is a faceless Frame."""
  files = {}
  for p in folder.iterdir():
    if p.suffix.lower() in media.IMAGE_EXTENSIONS:
      if not p.stem.isdigit():
        raise media.FaceInputError(f"{p}: frame files must be named by their frame number, "
                                   "e.g. 00001.jpg")
      files[int(p.stem)] = p
  last = max(files)
  if num_frames is not None and last > num_frames:
    raise media.FaceInputError(f"{files[last]}: frame {last} of a video of {num_frames} "
                               "frames (its stated, source-video or annotation-file count)")
  for i in range(1, (last if num_frames is None else num_frames) + 1):
    path = files.get(i)
    crop = media.read_image(path) if path is not None else None
    yield faces.Frame(index=i, face=crop, box=None,
                      source_shape=crop.shape[:2] if crop is not None else (0, 0))


def media_inputs(root: pathlib.Path) -> tuple[dict[str, pathlib.Path], list[pathlib.Path]]:
  """(output name -> video or photo, the files that are neither) under a folder.

  A file's name is its path under the folder without the extension ('a/clip' for
  a/clip.mp4); two files that differ only by extension keep it ('clip_mp4', 'clip_jpg').
  """
  files, others = media.media_files(root)
  if not files:
    raise media.FaceInputError(f"{root}: no video, photo or frame image in it or its "
                               f"sub-folders (expected {media.MEDIA_KINDS}s)")
  stems = [p.relative_to(root).with_suffix("").as_posix() for p in files]
  names = {}
  for stem, path in zip(stems, files):
    clash = stems.count(stem) > 1
    names[f"{stem}_{path.suffix[1:].lower()}" if clash else stem] = path
  return names, others


def frame_count(path: pathlib.Path) -> int:
  """Frames a file holds by its header (1 for a photo, 0 when unreadable): for progress."""
  if not media.is_video(path):
    return 1
  try:
    return max(media.video_info(path)["frames"], 1)
  except media.FaceInputError:
    return 0


class Counted:
  """The frames of one video, passed on, counted as they are read; progress is told of each.

  A container's header can be off by a frame or more (72 frames decoded from a file whose
  header says 73): the caller settles the progress total on `read` when the video ends.
  """

  def __init__(self, frames: Iterable[np.ndarray], progress: console.Progress, start: int):
    self.frames, self.progress, self.start, self.read = frames, progress, start, 0

  def __iter__(self) -> Iterator[np.ndarray]:
    for frame in self.frames:
      self.read += 1
      yield frame
      self.progress(min(self.start + self.read, self.progress.total - 1))
