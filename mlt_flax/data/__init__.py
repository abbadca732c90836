"""Datasets: the licensed AU datasets' formats and TFDS builders, and the synthetic set.

  label_files        errors, ``Problems``, ``LabelTable``; reading label lines and fields; folds
  affwild2_format    Aff-Wild2 (ABAW3 AU track): its layout and label files (read and written)
  bp4d_format        BP4D ``AU_OCC`` csv files
  disfa_format       DISFA per-AU intensity files
  frames             frame folders (file -> frame number) and images that decode
  examples           labelled ``Video``s -> TFDS examples, with ``SplitStats``
  build_report       a build's summary: ``summary.json`` and the printed report
  au_builder         the TFDS builder the three datasets share
  abaw3_au, bp4d, disfa   the TFDS builders
  build              ``python -m mlt_flax.data.build --dataset=... --manual_dir=... --data_dir=...``
  synthetic/         synthetic AU face videos in the Aff-Wild2 layout
                     (``python -m mlt_flax.data.synthetic --out_dir=...``)

See docs/datasets.md.
"""
