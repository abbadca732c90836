"""What the three AU builders share: the features, the metadata, skip_bad and the summary.

A builder subclasses `AuFramesBuilder`, sets AUS (from mlt_flax/aus.py), HOMEPAGE, SPLITS
and the TFDS attributes, and implements `read_splits(manual_dir, stats)`: split -> videos.
What every build writes: docs/datasets.md, "## What the builders write".
"""

import abc
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from mlt_flax import aus
from mlt_flax.data import build_report
from mlt_flax.data import examples
from mlt_flax.data import label_files


# The version every builder writes; bump it (and say why in RELEASE_NOTES) when the features
# or which frames are written change. `input_pipeline.builder` refuses older builds.
VERSION = tfds.core.Version("2.0.0")
RELEASE_NOTES = {
    "1.0.0": "Initial release.",
    "2.0.0": "Adds the boolean feature 'face'. abaw3_au also writes the labelled frames that "
             "have no face crop (face=False, a 1-pixel placeholder image, never trained on), "
             "so that evaluation can score every labelled frame as the challenge does.",
}


class AuFramesBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """One example per annotated frame with an image: image, face, labels (int8, -1 = not
  annotated), video, 1-based frame, subject."""
  AUS: tuple[int, ...] = ()  # the dataset's AUs in its own label order
  HOMEPAGE: str = ""
  SPLITS: tuple[str, ...] = ()
  KEEP_FACELESS: bool = False  # also write labelled frames without an image (face=False)
  VERSION = VERSION
  RELEASE_NOTES = RELEASE_NOTES

  def __init__(self, *, skip_bad: bool = False, print_summary: bool = True, **kwargs):
    """Args: skip_bad: skip (and report) malformed label lines and images instead of failing;
    print_summary: print the build's summary when done (mlt_flax.data.build prints its own);
    kwargs: those of tfds.core.DatasetBuilder (data_dir, config, version, ...)."""
    self.skip_bad = skip_bad
    self.print_summary = print_summary
    self._stats: dict[str, examples.SplitStats] = {}
    super().__init__(**kwargs)

  @classmethod
  def au_names(cls) -> tuple[str, ...]:
    return aus.names(cls.AUS)

  @abc.abstractmethod
  def read_splits(self, manual_dir: pathlib.Path,
                  stats: dict[str, examples.SplitStats]) -> dict[str, list[examples.Video]]:
    """Parses the manual dir: split -> videos (problems go to stats)."""

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3)),
            "face": np.bool_,
            "labels": tfds.features.Tensor(shape=(len(self.AUS),), dtype=np.int8),
            "video": tfds.features.Text(),
            "frame": np.int32,
            "subject": tfds.features.Text(),
        }),
        supervised_keys=("image", "labels"),
        homepage=self.HOMEPAGE,
        metadata=tfds.core.MetadataDict(au_names=list(self.au_names())),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    self._stats = {split: examples.SplitStats(label_files.Problems(self.skip_bad))
                   for split in self.SPLITS}
    splits = self.read_splits(pathlib.Path(dl_manager.manual_dir), self._stats)
    return {split: self._generate_examples(videos, self._stats[split])
            for split, videos in splits.items()}

  def _generate_examples(self, videos: list[examples.Video], stats: examples.SplitStats):
    """Yields (key, example) per annotated frame that has an image; counts the rest."""
    yield from examples.generate_examples(videos, stats, keep_faceless=self.KEEP_FACELESS)

  def _download_and_prepare(self, dl_manager, download_config):
    super()._download_and_prepare(dl_manager, download_config)
    report = build_report.summary(self.name, self.au_names(), self._stats, self.skip_bad)
    self.info.metadata["summary"] = report
    build_report.write_summary(self.data_dir, report)
    if self.print_summary:  # TFDS's own `tfds build`; mlt_flax.data.build prints its own
      print("\n" + build_report.format_summary(report), flush=True)
