"""A run's learning curves: the best evaluation, how long since it, early stopping, resuming."""

from mlt_flax import curves


def points(*f1s, every=100):
  c = curves.Curves()
  for i, f1 in enumerate(f1s, 1):
    c.add(i * every, f1, train_loss=1.0 / i)
  return c


def test_the_best_evaluation_is_the_first_with_the_highest_validation_f1():
  c = points(0.2, 0.5, 0.5, 0.4)
  assert c.best()["step"] == 200
  assert c.evaluations_since_best() == 2


def test_patience_counts_evaluations_that_do_not_beat_the_best():
  assert not points(0.2, 0.5, 0.5).should_stop(2)
  assert points(0.2, 0.5, 0.5, 0.4).should_stop(2)
  assert not points(0.2, 0.5, 0.5, 0.4).should_stop(0)  # 0: never stop
  assert not points(0.2, 0.5, 0.4, 0.6).should_stop(2)  # a new best resets it


def test_the_story_says_whether_the_run_was_still_improving():
  assert curves.Curves().story() == "no evaluation yet"
  assert points(0.2, 0.5).story() == (
      "validation mean F1 peaked at 0.500 at step 200 (2 evaluations), still improving at "
      "the last one: more steps may help")
  assert points(0.5, 0.2).story().endswith("no improvement in the 1 evaluation after it")


def test_a_resumed_run_keeps_the_points_up_to_its_checkpoint(tmp_path):
  points(0.2, 0.5, 0.6).save(tmp_path)
  resumed = curves.Curves.load(tmp_path, up_to_step=200)
  assert [p["step"] for p in resumed.points] == [100, 200]
  resumed.add(300, 0.55)  # step 300 trained again gives its own point
  assert [p["val_mean_f1"] for p in resumed.points] == [0.2, 0.5, 0.55]
  assert curves.Curves.load(tmp_path / "elsewhere", up_to_step=10).points == []
