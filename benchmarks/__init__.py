"""Throughput benchmarks, run as `python -m benchmarks.<name>` (each takes --help)."""

import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]  # the workers run from here
