"""What the three AU builders share: the features, the metadata, skip_bad and the summary.

A builder subclasses `AuFramesBuilder`, sets AUS (from mlt_flax/aus.py), HOMEPAGE, SPLITS
and the TFDS attributes, and implements `read_splits(manual_dir, stats)`: split -> videos.
"""

import abc
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from mlt_flax import aus
from mlt_flax.data import label_files


class AuFramesBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """One example per annotated frame with an image: image, labels (int8, -1 = not annotated),
  video, 1-based frame, subject."""
  AUS: tuple[int, ...] = ()  # the dataset's AUs in its own label order
  HOMEPAGE: str = ""
  SPLITS: tuple[str, ...] = ()

  def __init__(self, *, skip_bad: bool = False, **kwargs):
    """Args: skip_bad: skip (and report) malformed label lines and images instead of failing;
    kwargs: those of tfds.core.DatasetBuilder (data_dir, config, version, ...)."""
    self.skip_bad = skip_bad
    self._stats: dict[str, label_files.SplitStats] = {}
    super().__init__(**kwargs)

  @classmethod
  def au_names(cls) -> tuple[str, ...]:
    return aus.names(cls.AUS)

  @abc.abstractmethod
  def read_splits(self, manual_dir: pathlib.Path,
                  stats: dict[str, label_files.SplitStats]) -> dict[str, list]:
    """Parses the manual dir: split -> list of label_files.Video (problems go to stats)."""

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3)),
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
    self._stats = {split: label_files.SplitStats(label_files.Problems(self.skip_bad))
                   for split in self.SPLITS}
    splits = self.read_splits(pathlib.Path(dl_manager.manual_dir), self._stats)
    return {split: self._generate_examples(videos, self._stats[split])
            for split, videos in splits.items()}

  def _generate_examples(self, videos: list[label_files.Video],
                         stats: label_files.SplitStats):
    """Yields (key, example) per annotated frame that has an image; counts the rest."""
    yield from label_files.generate_examples(videos, stats)

  def _download_and_prepare(self, dl_manager, download_config):
    super()._download_and_prepare(dl_manager, download_config)
    report = label_files.summary(self.name, self.au_names(), self._stats, self.skip_bad)
    self.info.metadata["summary"] = report
    label_files.write_summary(self.data_dir, report)
    print("\n" + label_files.format_summary(report), flush=True)
