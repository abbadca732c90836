"""The report: a split scored four ways with thresholds tuned elsewhere, never on itself
(docs/recipe.md, "## Evaluation (ABAW3 AU track)"), written as report.json and a CSV."""

import json

import numpy as np
import pytest

from metric_fixtures import AU_NAMES
from metric_fixtures import random_split
from mlt_flax import metrics
from mlt_flax import reports
from mlt_flax import tuning


@pytest.fixture(name="splits")
def fixture_splits():
  return random_split(10, num_videos=8), random_split(11, num_videos=8)


def test_the_report_refuses_to_tune_on_the_reported_split(splits):
  (p, y, v, _), (pt, yt, vt, _) = splits
  with pytest.raises(ValueError, match="reported split"):
    reports.evaluation_report(p, y, v, au_names=AU_NAMES, window=5, split="validation",
                              tune=(pt, yt, vt), tuned_on="validation")
  # The same split under another name: the same arrays, copies, another model's outputs.
  for same in [(p, y, v), (p.copy(), y.copy(), v.copy()), (p ** 2, y.copy(), v)]:
    with pytest.raises(ValueError, match="identical"):
      reports.evaluation_report(p, y, v, au_names=AU_NAMES, window=5, split="validation",
                                tune=same, tuned_on="train_holdout")
  tuned = tuning.tune_split(p, y, v, tuned_on="train_holdout", windows=(5,))
  with pytest.raises(ValueError, match="fingerprint"):
    reports.evaluation_report(p, y, v, au_names=AU_NAMES, window=5, split="validation",
                              tuning=tuned)


def test_the_report_scores_four_ways_and_records_tuned_on(splits, tmp_path):
  (p, y, v, face), (pt, yt, vt, face_t) = splits
  report = reports.evaluation_report(p, y, v, au_names=AU_NAMES, window=20,
                                     split="validation", tune=(pt, yt, vt, face_t),
                                     tuned_on="train_holdout", windows=(5, 10),
                                     face_valid=face)
  assert report["split"] == "validation" and report["tuned_on"] == "train_holdout"
  tuned = tuning.tune_split(pt, yt, vt, tuned_on="train_holdout", windows=(5, 10),
                            face_valid=face_t)
  assert report["window_tuned"] == tuned.window
  th_raw = [report["thresholds_tuned_raw"][a] for a in AU_NAMES]
  np.testing.assert_array_equal(th_raw, tuned.thresholds_raw)
  expected = {
      "fixed_raw": metrics.f1_scores(p, y, 0.5),
      "fixed_smoothed": metrics.f1_scores(metrics.smooth(p, v, 20, face), y, 0.5),
      "tuned_raw": metrics.f1_scores(p, y, tuned.thresholds_raw),
      "tuned_smoothed": metrics.f1_scores(metrics.smooth(p, v, tuned.window, face), y,
                                          tuned.thresholds_smoothed),
  }
  for name, (per_au, mean) in expected.items():
    assert report["scores"][name]["mean"] == mean
    assert [report["scores"][name]["per_au"][a] for a in AU_NAMES] == list(per_au)
  # The same report from the precomputed tuning.
  again = reports.evaluation_report(p, y, v, au_names=AU_NAMES, window=20,
                                    split="validation", tuning=tuned, face_valid=face)
  assert again == report

  reports.write_report(report, tmp_path)
  assert json.loads((tmp_path / "report.json").read_text()) == report
  rows = (tmp_path / "per_au_f1.csv").read_text().splitlines()
  assert rows[0].startswith("au,fixed_raw,fixed_smoothed,tuned_raw,tuned_smoothed")
  assert [r.split(",")[0] for r in rows[1:]] == [*AU_NAMES, "mean"]
