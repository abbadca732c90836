"""Datasets: label-file parsing and the TFDS builders of the licensed AU datasets."""
