"""Previewing a written dataset: a contact sheet of random frames, each captioned with its AUs."""

import os
import pathlib

import cv2
import numpy as np

from mlt_flax.data.synthetic.layout import (AU_ORDER, FIRST_FRAME, FRAME_NAME, IMAGES_DIR,
                                            LABELS_DIR, NOT_ANNOTATED, SPLIT_DIRS)


def contact_sheet(out_dir: str | os.PathLike, path: str | os.PathLike, *, num: int = 16,
                  columns: int = 4, zoom: int = 2, split: str = "train", seed: int = 0) -> None:
  """Saves a grid of `num` random frames of a split, each captioned with its active AUs."""
  root = pathlib.Path(out_dir)
  label_files = sorted((root / LABELS_DIR / SPLIT_DIRS[split]).glob("*.txt"))
  rng = np.random.default_rng(seed)
  tiles = []
  while len(tiles) < num:
    label_path = label_files[rng.integers(len(label_files))]
    rows = label_path.read_text().split("\n")[1:-1]
    t = int(rng.integers(len(rows)))
    image_path = root / IMAGES_DIR / label_path.stem / FRAME_NAME.format(t + FIRST_FRAME)
    if not image_path.exists():
      continue
    image = cv2.imread(str(image_path))
    image = cv2.resize(image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
    values = rows[t].split(",")
    active = [str(au) for au, v in zip(AU_ORDER, values) if v == "1"]
    caption = np.full((28, image.shape[1], 3), 255, np.uint8)
    unannotated = all(v == str(NOT_ANNOTATED) for v in values)
    text = "not annotated" if unannotated else (",".join(active) or "-")
    for k, chunk in enumerate((text[:22], text[22:])):
      cv2.putText(caption, chunk, (2, 11 + 13 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0),
                  1, cv2.LINE_AA)
    tiles.append(np.vstack([image, caption]))
  rows_img = [np.hstack(tiles[r:r + columns]) for r in range(0, num, columns)]
  cv2.imwrite(str(path), np.vstack(rows_img))

