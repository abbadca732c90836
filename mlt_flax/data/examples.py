"""Labelled videos -> TFDS examples, counting what is written and what is skipped.

A builder turns its manual dir into ``Video``s (labels + frame files); ``generate_examples``
yields one example per annotated frame with a readable image (and, for the challenge's
dataset, per labelled frame without a face crop, marked ``face = False``) and fills a
``SplitStats``, which ``build_report`` turns into the build's summary.
"""

import dataclasses
import functools
import io
import os
import pathlib
from typing import Iterator, Mapping, Sequence

import numpy as np

from mlt_flax.data import frames
from mlt_flax.data import label_files


@dataclasses.dataclass(frozen=True)
class Video:
  """One labelled video and its frame files.

  Attributes:
    name: the ``video`` feature (Aff-Wild2 file stem, BP4D ``F001_T1``, DISFA ``SN001``).
    subject: the ``subject`` feature.
    labels: its label_files.LabelTable.
    images: {1-based frame number: image file}.
  """
  name: str
  subject: str
  labels: label_files.LabelTable
  images: Mapping[int, pathlib.Path]


def require_images(videos: Sequence[Video], images_dir: os.PathLike | str,
                   expected: str) -> None:
  """Raises if not one of ``videos`` has a frame file: the image folder is misplaced.

  (Single missing frames are normal and counted; a split with none means a wrong layout.)
  """
  if videos and not any(video.images for video in videos):
    raise label_files.DatasetFormatError(
        f"{images_dir}: no frame images found for any of {len(videos)} labelled videos; "
        f"expected {expected}")


@dataclasses.dataclass
class SplitStats:
  """What a split's build wrote and skipped; filled by ``generate_examples``."""
  problems: label_files.Problems
  videos: set[str] = dataclasses.field(default_factory=set)
  subjects: set[str] = dataclasses.field(default_factory=set)
  frames_written: int = 0  # frames written with their face image
  faceless_frames: int = 0  # labelled frames with no image, written with face = False
  unannotated_frames: int = 0  # written frames whose labels are all -1
  missing_images: list[str] = dataclasses.field(default_factory=list)
  positives: np.ndarray | None = None  # int64 [L]
  annotated: np.ndarray | None = None  # int64 [L]

  def count(self, labels: np.ndarray) -> None:
    """Adds one written frame's labels [L] to the per-AU counts."""
    if self.positives is None:
      self.positives = np.zeros(labels.shape, np.int64)
      self.annotated = np.zeros(labels.shape, np.int64)
    self.frames_written += 1
    valid = labels != label_files.NOT_ANNOTATED
    self.unannotated_frames += int(not valid.any())
    self.annotated += valid
    self.positives += labels == 1


@functools.cache
def faceless_placeholder() -> bytes:
  """The image of a frame without a face crop: one black pixel, PNG (never trained on)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  Image.new("RGB", (1, 1)).save(buffer, format="PNG")
  return buffer.getvalue()


def generate_examples(videos: Sequence[Video], stats: SplitStats, *,
                      keep_faceless: bool = False) -> Iterator[tuple[str, dict[str, object]]]:
  """Yields ``(key, example)`` for every annotated frame that has a readable image.

  A frame without an image file is recorded in ``stats.missing_images`` and skipped, or,
  with ``keep_faceless``, written with ``face = False`` and a placeholder image (the ABAW
  challenge scores every labelled frame, with or without a face crop). An unreadable image
  goes to ``stats.problems``.

  Yields:
    key ``"<video>/<frame>"``; example {image: bytes, face: bool, labels: int8 [L],
    video: str, frame: int (1-based), subject: str}.
  """
  for video in videos:
    for frame, labels in zip(video.labels.frames.tolist(), video.labels.labels):
      path = video.images.get(frame)
      if path is None:
        stats.missing_images.append(f"{video.name} frame {frame}")
        if not keep_faceless:
          continue
        stats.faceless_frames += 1
        image, face = faceless_placeholder(), False
      else:
        image = frames.read_image(path, stats.problems)
        if image is None:
          continue
        stats.count(labels)
        face = True
      stats.videos.add(video.name)
      stats.subjects.add(video.subject)
      yield f"{video.name}/{frame}", {
          "image": image,
          "face": face,
          "labels": labels,
          "video": video.name,
          "frame": frame,
          "subject": video.subject,
      }
