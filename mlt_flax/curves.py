"""A run's learning curves: what every evaluation scored, when validation F1 stopped improving,
and early stopping.

Each evaluation during training adds one point: the step, the validation mean F1 (the metric
that picks the best checkpoint), the mean F1 on training frames when config.eval.train_f1_stride
is set (scored like validation: no augmentation, threshold 0.5), and the training loss last
logged. The points live in <workdir>/curves.json, rewritten after every evaluation, so that a
resumed run continues the same curves (points after the checkpoint it resumes from are
dropped: those steps are trained again). `plots.learning_curves` draws them.

Early stopping (config.train.early_stopping_patience = N > 0) ends training after N
evaluations in a row without a new best validation mean F1. The loop then checkpoints every
evaluation, so that the best evaluation's checkpoint exists for evaluate and predict.
"""

import dataclasses
import json
import pathlib

FILE = "curves.json"
PLOT = "curves.png"


@dataclasses.dataclass
class Curves:
  """The evaluations of a run, in step order: dicts with 'step', 'val_mean_f1', and where
  measured 'train_mean_f1' and 'train_loss'."""
  points: list[dict] = dataclasses.field(default_factory=list)

  @classmethod
  def load(cls, workdir, up_to_step: int) -> "Curves":
    """The curves saved in `workdir`, up to `up_to_step` (the step training resumes from)."""
    path = pathlib.Path(workdir) / FILE
    if not path.exists():
      return cls()
    points = json.loads(path.read_text())["evaluations"]
    return cls([p for p in points if p["step"] <= up_to_step])

  def add(self, step: int, val_mean_f1: float, *, train_mean_f1: float | None = None,
          train_loss: float | None = None) -> None:
    point = {"step": int(step), "val_mean_f1": float(val_mean_f1)}
    if train_mean_f1 is not None:
      point["train_mean_f1"] = float(train_mean_f1)
    if train_loss is not None:
      point["train_loss"] = float(train_loss)
    self.points = [p for p in self.points if p["step"] != step] + [point]

  def save(self, workdir) -> pathlib.Path:
    path = pathlib.Path(workdir) / FILE
    path.write_text(json.dumps({"evaluations": self.points}, indent=1))
    return path

  def best(self) -> dict | None:
    """The first evaluation with the highest validation mean F1."""
    return max(self.points, key=lambda p: p["val_mean_f1"], default=None)

  def evaluations_since_best(self) -> int:
    best = self.best()
    return 0 if best is None else sum(p["step"] > best["step"] for p in self.points)

  def should_stop(self, patience: int) -> bool:
    """Whether `patience` (> 0) evaluations in a row have not beaten the best."""
    return patience > 0 and self.evaluations_since_best() >= patience

  def story(self) -> str:
    """One line: where validation F1 peaked, and whether it was still improving at the end."""
    best = self.best()
    if best is None:
      return "no evaluation yet"
    since = self.evaluations_since_best()
    line = (f"validation mean F1 peaked at {best['val_mean_f1']:.3f} at step {best['step']} "
            f"({len(self.points)} evaluations)")
    if since == 0:
      return line + ", still improving at the last one: more steps may help"
    return line + f"; no improvement in the {since} evaluation{'s' * (since > 1)} after it"
