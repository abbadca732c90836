"""--annotated_video: the source video (or photo) with each face's box, id and AU bars drawn in."""

import pathlib

import cv2
import numpy as np

from mlt_flax import media
from mlt_flax.predict import outputs

ANNOTATED_FOURCC = "mp4v"  # MPEG-4 Part 2: OpenCV's pip wheels write it without extra codecs
MIN_FPS = 1.0  # for a video whose header gives no frame rate
CAPTION_ROW_PX = 14  # one line of the caption, drawn along the frame's bottom edge

# Drawing of --annotated_video: one colour per face id (BGR, cycled), and the bar panel.
ANNOTATION_COLOURS = ((60, 180, 75), (230, 50, 25), (25, 225, 255), (200, 130, 0),
                      (240, 50, 230), (245, 130, 48), (128, 128, 0), (180, 30, 145))
BAR_ROW_PX, BAR_WIDTH_PX, LABEL_WIDTH_PX = 12, 60, 40  # one AU per row: name, then its bar
FONT, FONT_SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.35
PANEL_COLOUR = (40, 40, 40)  # dark grey behind the bars: white names read on any frame


def _draw_face(image: np.ndarray, face_id: int, box, probs, au_names, thresholds) -> None:
  """One face's box, id and AU probability bars, drawn into a BGR image in place."""
  colour = ANNOTATION_COLOURS[(max(face_id, 1) - 1) % len(ANNOTATION_COLOURS)]
  x, y, w, h = (int(round(v)) for v in box)
  cv2.rectangle(image, (x, y), (x + w, y + h), colour, 2)
  cv2.putText(image, f"face {face_id}" if face_id else "face", (x, max(y - 5, 10)), FONT,
              2 * FONT_SCALE, colour, 1, cv2.LINE_AA)
  panel = LABEL_WIDTH_PX + BAR_WIDTH_PX
  px = x + w + 5 if x + w + 5 + panel <= image.shape[1] else max(x - 5 - panel, 0)
  cv2.rectangle(image, (px, y), (px + panel, y + len(au_names) * BAR_ROW_PX), PANEL_COLOUR, -1)
  for i, (name, p, threshold) in enumerate(zip(au_names, probs, thresholds)):
    top = y + i * BAR_ROW_PX
    cv2.putText(image, name, (px, top + BAR_ROW_PX - 3), FONT, FONT_SCALE, (255, 255, 255), 1,
                cv2.LINE_AA)
    bar = (px + LABEL_WIDTH_PX, top + 2)
    cv2.rectangle(image, bar, (bar[0] + BAR_WIDTH_PX, top + BAR_ROW_PX - 2), (90, 90, 90), 1)
    cv2.rectangle(image, bar, (bar[0] + int(round(p * BAR_WIDTH_PX)), top + BAR_ROW_PX - 2),
                  colour if p >= threshold else (160, 160, 160), -1)


def _draw_caption(image: np.ndarray, caption: str) -> None:
  """A line of text on a dark band along the bottom of a BGR image, in place."""
  h = image.shape[0]
  cv2.rectangle(image, (0, h - CAPTION_ROW_PX - 4), (image.shape[1], h), PANEL_COLOUR, -1)
  cv2.putText(image, caption, (4, h - 5), FONT, FONT_SCALE, (255, 255, 255), 1, cv2.LINE_AA)


def write_annotated(pred: outputs.VideoPrediction, series: list[outputs.FaceSeries],
                    out: pathlib.Path, au_names, decisions: outputs.Decisions,
                    caption: str | None = None) -> pathlib.Path:
  """The source video (or photo) with each face's box, id and AU bars drawn in.

  The source is read a second time, one frame at a time, and written as it is read, so memory
  does not grow with the video. The bars show the CSV's probabilities (filled in the face's
  colour at or above the AU's threshold); caption, when given, is written along the bottom of
  every frame. Returns the file written: <name>_annotated.mp4 (MPEG-4,
  the source's frame rate and size) for a video, <name>_annotated.jpg for a photo.
  """
  probs = outputs.row_probs(pred, series)  # series: outputs.face_series(pred, decisions.window)
  rows_of = {}
  for i in np.flatnonzero(pred.face_found):
    rows_of.setdefault(int(pred.frames[i]), []).append(i)

  def drawn(index, rgb):
    image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    for i in rows_of.get(index, ()):
      if not np.isnan(pred.boxes[i]).any():
        _draw_face(image, int(pred.face_ids[i]), pred.boxes[i], probs[i], au_names,
                   decisions.thresholds)
    if caption:
      _draw_caption(image, caption)
    return image

  if not media.is_video(pred.source):
    path = out / f"{pred.name}_annotated.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), drawn(1, media.read_image(pred.source)))
    return path
  info = media.video_info(pred.source)
  path = out / f"{pred.name}_annotated.mp4"
  path.parent.mkdir(parents=True, exist_ok=True)
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*ANNOTATED_FOURCC),
                           max(info["fps"], MIN_FPS), (info["width"], info["height"]))
  if not writer.isOpened():
    raise ValueError(f"{path}: OpenCV cannot write an {ANNOTATED_FOURCC} video here")
  try:
    for index, rgb in enumerate(media.read_video(pred.source), start=1):
      writer.write(drawn(index, rgb))
  finally:
    writer.release()
  return path
