"""docs/recipe.md is the specification: its tables against the configs, its formulas against
the objects the code builds.

The recipe has one table row per config field (`| field | value | paper | authors' code |
why / notes |`). Tables in the sections for the configs' defaults belong to configs/abaw3.py
(= `configuration.defaults()`); a table whose introducing paragraph names `configs/<name>.py`
and says it "overrides" lists the fields that config sets itself. `recipe_tables` walks every
Markdown table of the page; `config_rows` gives, per config, its field -> row.
"""

import ast
import dataclasses
import math
import pathlib
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import abaw3
from configs import demo
from configs import from_scratch
from configs import pretrain_authors_abaw3
from configs import pretrain_bp4d_disfa
from configs import pretrain_mixture
from configs import tiny
from mlt_flax import augment
from mlt_flax import aus
from mlt_flax import configuration
from mlt_flax import input_pipeline
from mlt_flax import losses
from mlt_flax import models
from mlt_flax import runtime
from test_mlt import dropout_sites

ROOT = pathlib.Path(__file__).resolve().parents[1]
RECIPE = ROOT / "docs" / "recipe.md"
FIELD_TABLE_HEADER = ("field", "value", "paper", "authors' code", "why / notes")
CONFIG_MODULES = {"abaw3": abaw3, "pretrain_bp4d_disfa": pretrain_bp4d_disfa,
                  "pretrain_mixture": pretrain_mixture,
                  "pretrain_authors_abaw3": pretrain_authors_abaw3, "demo": demo, "tiny": tiny,
                  "from_scratch": from_scratch}
OWNER = re.compile(r"`configs/(\w+)\.py`.*\boverrides\b", re.S)


# ------------------------------------------------------------------------------------------
# The table walker.


@dataclasses.dataclass
class RecipeTable:
  section: str  # the '## ' heading the table sits under
  intro: str  # the paragraph just before the table
  header: tuple[str, ...]
  rows: list[dict[str, str]]  # header cell -> cell text, per row
  line: int  # 1-based line of the header in the file


def _cells(line: str) -> list[str]:
  # Split on the pipes of the row; a pipe inside backticks (none today) would need escaping.
  return [c.strip() for c in line.strip().strip("|").split("|")]


def recipe_tables(path: pathlib.Path = RECIPE) -> list[RecipeTable]:
  """Every Markdown table of the recipe, in order, with its section and introduction."""
  lines = path.read_text().splitlines()
  tables, section, intro, i = [], "", [], 0
  while i < len(lines):
    line = lines[i]
    if line.startswith("## "):
      section, intro = line[3:].strip(), []
    elif line.startswith("|") and i + 1 < len(lines) and re.match(r"^\|(\s*-+\s*\|)+$",
                                                                   lines[i + 1].strip()):
      header = tuple(_cells(line))
      rows, j = [], i + 2
      while j < len(lines) and lines[j].startswith("|"):
        cells = _cells(lines[j])
        assert len(cells) == len(header), f"{path.name}:{j + 1}: {len(cells)} cells, " \
            f"{len(header)} columns"
        rows.append(dict(zip(header, cells)))
        j += 1
      paragraphs = [p for p in "\n".join(intro).split("\n\n") if p.strip()]
      tables.append(RecipeTable(section, paragraphs[-1] if paragraphs else "", header, rows,
                                i + 1))
      intro, i = [], j
      continue
    else:
      intro.append(line)
    i += 1
  return tables


def config_rows(path: pathlib.Path = RECIPE) -> dict[str, dict[str, dict[str, str]]]:
  """{config name: {field: row}} from the recipe's field tables; a field twice is an error.

  A field table whose introducing paragraph names `configs/<name>.py` and "overrides" belongs
  to that config; every other field table belongs to configs/abaw3.py (the defaults).
  """
  out: dict[str, dict[str, dict[str, str]]] = {}
  for table in recipe_tables(path):
    if table.header != FIELD_TABLE_HEADER:
      continue
    owner = OWNER.search(table.intro)
    name = owner.group(1) if owner else "abaw3"
    rows = out.setdefault(name, {})
    for row in table.rows:
      field = _literal_code(row["field"], str)
      assert field not in rows, f"{name}: `{field}` has two rows (line {table.line})"
      rows[field] = row
  return out


def _literal_code(cell: str, kind=None):
  """The text of a cell that is one `code` span; kind=str returns it as is."""
  m = re.fullmatch(r"`([^`]+)`", cell)
  assert m, f"expected one `code` span, got {cell!r}"
  return m.group(1) if kind is str else ast.literal_eval(m.group(1))


def row_value(row: dict[str, str]):
  """The Python value a row's `value` cell holds."""
  return _literal_code(row["value"])


def same_value(a, b) -> bool:
  """Equal and of the same type (True is not 1, 5e-5 is not '5e-5'), tuples element-wise."""
  if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
    return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
  return type(a) is type(b) and a == b


def flat_fields(config: ml_collections.ConfigDict, prefix: str = "") -> dict:
  """{'model.d_model': 128, ..., 'seed': 0}: every leaf field of a config."""
  out = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      out.update(flat_fields(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def assigned_fields(module) -> set[str]:
  """The fields a config module sets itself: every `config.<a>.<b> = ...` in its source."""
  tree = ast.parse(pathlib.Path(module.__file__).read_text())
  fields = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Assign):
      for target in node.targets:
        parts = []
        while isinstance(target, ast.Attribute):
          parts.append(target.attr)
          target = target.value
        if isinstance(target, ast.Name) and target.id == "config" and parts:
          fields.add(".".join(reversed(parts)))
  return fields


@pytest.fixture(scope="module")
def rows():
  return config_rows()


# ------------------------------------------------------------------------------------------
# (a) The tables and the configs, one to one.


def test_every_default_has_exactly_one_row_with_its_value(rows):
  # "Its fields and defaults are those of `mlt_flax.configuration.defaults()` [...] Every
  # value below is what the config holds today."
  fields = flat_fields(configuration.defaults())
  assert flat_fields(abaw3.get_config()) == fields  # configs/abaw3.py is the defaults
  table = rows["abaw3"]
  assert sorted(set(fields) - set(table)) == [], "fields with no row"
  assert sorted(set(table) - set(fields)) == [], "rows with no field"
  wrong = {f: (row_value(table[f]), fields[f]) for f in fields
           if not same_value(row_value(table[f]), fields[f])}
  assert wrong == {}, "(recipe value, config value)"


@pytest.mark.parametrize("name", ["pretrain_bp4d_disfa", "pretrain_mixture",
                                  "pretrain_authors_abaw3", "demo", "tiny",
                                  "from_scratch"])
def test_every_override_has_exactly_one_row_with_its_value(rows, name):
  # "`configs/pretrain_bp4d_disfa.py` overrides these fields:" and so on, for each config
  # that starts from another one.
  module = CONFIG_MODULES[name]
  overridden = assigned_fields(module)
  table = rows[name]
  assert sorted(overridden - set(table)) == [], f"{name}: overrides with no row"
  assert sorted(set(table) - overridden) == [], f"{name}: rows it does not override"
  fields = flat_fields(module.get_config())
  wrong = {f: (row_value(table[f]), fields[f]) for f in table
           if not same_value(row_value(table[f]), fields[f])}
  assert wrong == {}, "(recipe value, config value)"


def test_the_walker_sees_every_table():
  tables = recipe_tables()
  field_tables = [t for t in tables if t.header == FIELD_TABLE_HEADER]
  owners = {OWNER.search(t.intro).group(1) if OWNER.search(t.intro) else "abaw3"
            for t in field_tables}
  assert owners == set(CONFIG_MODULES)
  # Every '|' line of the file is in some table: a table with a broken separator line would
  # otherwise be skipped without a word.
  table_lines = sum(len(t.rows) + 2 for t in tables)
  assert table_lines == sum(line.startswith("|") for line in RECIPE.read_text().splitlines())


# ------------------------------------------------------------------------------------------
# (b) The built objects against the recipe's formulas, computed here independently.

S = 8  # steps per epoch: warm-up w = 2.5 S = 20 steps
CHOSEN_COUNTS = (0, 1, 2, 19, 20, 21, 39, 40, 47, 80, 81)  # optax's 0-based update counts


def recipe_backbone_lr(count, config):
  # "lr(epoch) = lr0 · decay^epoch, a staircase that changes once per epoch"
  epoch = math.floor(count / S)
  return config.optim.backbone_lr * config.optim.backbone_decay**epoch


def recipe_transformer_lr(count, n, config):
  # "lr(s) = (B · n / batch_tokens) · d^−0.5 · min(s^−0.5, s · w^−1.5)", s 1-based,
  # w = warmup_epochs × steps per epoch
  s = count + 1
  b, d = config.train.batch_size, config.model.d_model
  w = config.optim.warmup_epochs * S
  return b * n / config.optim.transformer_batch_tokens * d**-0.5 * min(s**-0.5, s * w**-1.5)


def fake_params():
  """One kernel and one bias per group, nonzero, for updates through the real optimiser."""
  rng = np.random.default_rng(0)
  return {g: {"layer": {"kernel": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32),
                        "bias": jnp.asarray(rng.normal(size=(2,)), jnp.float32)}}
          for g in ("backbone", "patch_encoder", "label_decoder")}


@pytest.mark.parametrize("module", [abaw3, pretrain_bp4d_disfa])
def test_learning_rate_of_each_group_at_chosen_steps(module):
  config = module.get_config()
  n_x = models.num_patches(config.model)
  num_labels = len(aus.label_space(config.data.label_space))
  assert (n_x, num_labels) == (64, 12 if module is abaw3 else 17)  # n_x = 64 at 299; L
  _, lr_fns, _ = runtime.build(config, S)  # what train.py builds
  for count in CHOSEN_COUNTS:
    np.testing.assert_allclose(lr_fns["backbone"](count), recipe_backbone_lr(count, config),
                               rtol=1e-6)
    # "n = n_x (64 patch tokens) for the patch encoder and n = L [...] for the label decoder"
    np.testing.assert_allclose(lr_fns["patch_encoder"](count),
                               recipe_transformer_lr(count, n_x, config), rtol=1e-5)
    np.testing.assert_allclose(lr_fns["label_decoder"](count),
                               recipe_transformer_lr(count, num_labels, config), rtol=1e-5)
  # "the factor in front of min(·) is 64·64/25000 · 128^−0.5 ≈ 0.0145 for the encoder and
  # 64·12/25000 · 128^−0.5 ≈ 0.00272 for the decoder"
  if module is abaw3:
    assert round(64 * 64 / 25000 * 128**-0.5, 4) == 0.0145
    assert round(64 * 12 / 25000 * 128**-0.5, 5) == 0.00272
    assert config.optim.backbone_lr == 5e-5  # the authors' ABAW3 grids


def test_the_built_optimiser_decays_each_group_by_its_scheduled_lr():
  # "θ ← θ − lr_t · (m̂ / (√v̂ + ε) + λ θ) [...] λ = 1.0 makes the decay coefficient equal to
  # lr_t": with zero gradients Adam's part is 0, so each update is −lr_t θ, at every step.
  config = abaw3.get_config()
  _, _, tx = runtime.build(config, S)
  params = fake_params()
  state = tx.init(params)
  zeros = jax.tree.map(jnp.zeros_like, params)
  n = {"backbone": None, "patch_encoder": 64, "label_decoder": 12}
  for count in range(max(CHOSEN_COUNTS) + 1):
    updates, state = tx.update(zeros, state, params)
    if count in CHOSEN_COUNTS:
      for g, size in n.items():
        lr = (recipe_backbone_lr(count, config) if size is None
              else recipe_transformer_lr(count, size, config))
        for leaf in ("kernel", "bias"):  # 'all': biases are decayed too
          np.testing.assert_allclose(updates[g]["layer"][leaf],
                                     -lr * 1.0 * params[g]["layer"][leaf], rtol=1e-5,
                                     err_msg=f"{g}/{leaf} at count {count}")
    params = optax.apply_updates(params, updates)


def test_an_adamw_update_is_the_decoupled_rule():
  # One step with gradient g from a fresh state: m̂ = g, v̂ = g², so
  # θ' = θ − lr_0 (g / (|g| + ε) + 1.0 θ), ε = 1e-7, for every group with its own lr_0.
  config = abaw3.get_config()
  _, lr_fns, tx = runtime.build(config, S)
  params = fake_params()
  grads = jax.tree.map(lambda p: 0.3 * p + 0.1, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  new = optax.apply_updates(params, updates)
  for g in params:
    lr = float(lr_fns[g](0))
    for leaf in ("kernel", "bias"):
      p, grad = np.asarray(params[g]["layer"][leaf]), np.asarray(grads[g]["layer"][leaf])
      expected = p - lr * (grad / (np.abs(grad) + 1e-7) + 1.0 * p)
      np.testing.assert_allclose(new[g]["layer"][leaf], expected, rtol=1e-6, atol=1e-9)


@pytest.mark.slow  # traces the recipe's whole head (~12 s)
def test_dropout_sites_of_the_recipe_model():
  # eq. 4: Q_mlp = D(GELU(Q W_g)), MLP(Q) = D(Q_mlp W_l); eq. 8 / 11: LN[X̃ + D(MLP(X̃))];
  # eq. 7 / 9 / 10: LN(Q + D(MHA)). Recipe row `model.mlp_residual_dropout` `True`: "three
  # dropouts on the MLP path". The recipe's head (d 128, N_x 1, N_l 2, 'code' layout, rate
  # 0.1) on the small CNN at 112 (the same n_x = 64 as InceptionV3 at 299).
  config = abaw3.get_config()
  config.model.backbone, config.model.pretrained, config.model.image_size = (
      "small_cnn", "", 112)
  model = models.build_model(config.model, num_labels=12)
  x = jnp.zeros((1, 112, 112, 3))
  variables = model.init(jax.random.key(0), x, train=False)
  sites = dropout_sites(model, variables, x)
  mlp = [("Dense", None), ("Dropout", 0.1), ("Dense", None), ("Dropout", 0.1),
         ("Dropout", 0.1), ("LayerNorm", None)]
  attention = [("MultiHeadDotProductAttention", None), ("Dropout", 0.1), ("LayerNorm", None)]
  mlps = {p[-2:]: s for p, s in sites.items() if p[-1].endswith("mlp")}
  attentions = {p[-2:]: s for p, s in sites.items() if p[-1].endswith("attention")}
  assert set(mlps) == {("patch_encoder", "layer0_mlp"),
                       ("label_decoder", "layer0_self_mlp"), ("label_decoder", "layer0_mlp"),
                       ("label_decoder", "layer1_self_mlp"), ("label_decoder", "layer1_mlp")}
  assert all(s == mlp for s in mlps.values())
  assert len(attentions) == 5 and all(s == attention for s in attentions.values())


def test_frequency_weights_and_loss_on_a_hand_computed_example():
  # "w_t = T · (1/f_t) / Σ_k (1/f_k), and an AU with f_t = 0 gets w_t = 0";
  # "BCE = mean over b, t of m_bt · w_t · [−y log p − (1 − y) log(1 − p)]";
  # "Dice = mean over b, t of m_bt · w_t · [1 − (2 y p + 1) / (y² + p² + 1)]";
  # "loss = [bce] BCE + [dice] λ · Dice", λ = 0.5.
  labels = np.array([[1, 0, 0], [1, 1, 0], [0, 0, -1], [0, 0, 0]], np.float32)
  # f = (2/4, 1/4, 0/3) -> 1/f = (2, 4, -) -> w = 3 (2, 4, 0) / 6 = (1, 2, 0)
  np.testing.assert_allclose(losses.frequency_weights(labels), [1.0, 2.0, 0.0], rtol=1e-6)
  stats = input_pipeline.SplitStats(4, (labels == 1).sum(0), (labels >= 0).sum(0))
  w = input_pipeline.mixture_frequency_weights([stats], (1.0,))
  np.testing.assert_allclose(w, [1.0, 2.0, 0.0], rtol=1e-6)

  logits = np.array([[0.0, math.log(3.0), -1.0], [2.0, 0.0, 0.5]], np.float32)
  targets = np.array([[0.95, 0.05, 0.5], [0.05, 0.95, 0.0]], np.float32)
  mask = np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0]], np.float32)
  bce = dice = 0.0
  for b in range(2):
    for t in range(3):
      p = 1.0 / (1.0 + math.exp(-float(logits[b, t])))
      y = float(targets[b, t])
      bce += mask[b, t] * w[t] * (-y * math.log(p) - (1 - y) * math.log(1 - p))
      dice += mask[b, t] * w[t] * (1 - (2 * y * p + 1) / (y * y + p * p + 1))
  bce, dice = bce / 6, dice / 6  # means over all B x T = 6 entries, masked ones as zeros
  cfg = configuration.defaults().loss
  loss, terms = losses.mlt_loss(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(mask),
                                jnp.asarray(w), cfg)
  np.testing.assert_allclose(terms["bce"], bce, rtol=1e-5)
  np.testing.assert_allclose(terms["dice"], dice, rtol=1e-5)
  np.testing.assert_allclose(loss, bce + 0.5 * dice, rtol=1e-5)


def test_augmentation_runs_in_the_recipe_order(monkeypatch):
  # "The augmentation order is mixup → horizontal flip → brightness → channel drop →
  # rotation → zoom → label smoothing [...] fuses flip, rotation, zoom and the resize into
  # one bilinear resampling per frame. It applies brightness and channel drop before the
  # warp" (flip commutes with them exactly: they are the same for every pixel of a frame).
  calls = []
  for name in ("sample_mixup", "mix", "adjust_brightness", "drop_channels", "warp",
               "smooth_labels"):
    original = getattr(augment, name)

    def recorded(*args, _name=name, _original=original, **kwargs):
      calls.append(_name)
      return _original(*args, **kwargs)

    monkeypatch.setattr(augment, name, recorded)
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3)), jnp.uint8)
  labels = jnp.asarray([[1, 0], [0, 1], [1, 1], [0, 0]], jnp.float32)
  augment.augment(jax.random.key(0), images, labels, configuration.defaults().augment, 24,
                  allow_mixup=True)
  assert calls == ["sample_mixup", "mix", "adjust_brightness", "drop_channels", "warp",
                   "smooth_labels"]


def test_the_warp_flips_before_it_rotates():
  # Inside the one resampling: flip -> rotation -> zoom. The zoom is isotropic about the
  # centre, so it commutes with both; flip and rotation do not commute, and a quarter turn
  # at native size is an exact pixel permutation (pi / 2 is np.rot90).
  x = jnp.asarray(np.random.default_rng(0).random((1, 6, 6, 3)), jnp.float32)
  out = np.asarray(augment.warp(x, jnp.array([True]), jnp.array([math.pi / 2]),
                                jnp.array([1.0]), 6))
  flip_then_rotate = np.rot90(np.asarray(x)[:, :, ::-1], axes=(1, 2))
  rotate_then_flip = np.rot90(np.asarray(x), axes=(1, 2))[:, :, ::-1]
  np.testing.assert_allclose(out, flip_then_rotate, atol=1e-5)
  assert not np.allclose(out, rotate_then_flip, atol=1e-2)


# ------------------------------------------------------------------------------------------
# (b, continued) The report follows the "Evaluation (ABAW3 AU track)" rows and protocol.


def test_the_report_follows_the_evaluation_rows_and_the_challenge_protocol(rows, trained,
                                                                           tmp_path):
  # "`eval.threshold` 0.5 ... `eval.smoothing_window` 20 (in video frames) ...
  # `eval.threshold_grid_step` 0.005 ... `eval.smoothing_windows`: the windows tried";
  # "the challenge protocol: every labelled frame at the full frame rate, faceless frames
  # given the nearest face frame's prediction, smoothing over frame numbers".
  from mlt_flax import evaluate  # pylint: disable=g-import-not-at-top
  from mlt_flax import tuning  # pylint: disable=g-import-not-at-top
  table = rows["abaw3"]
  assert row_value(table["eval.threshold"]) == 0.5
  config, workdir, _ = trained
  report = evaluate.evaluate(workdir, out_dir=tmp_path)
  assert report["threshold_fixed"] == config.eval.threshold
  assert report["window_fixed"] == config.eval.smoothing_window
  assert report["window_tuned"] in config.eval.smoothing_windows
  assert all(f["window_tuned"] in config.eval.smoothing_windows for f in report["folds"])
  step = row_value(table["eval.threshold_grid_step"])
  grid = tuning.threshold_grid(step)
  assert grid[0] == pytest.approx(step) and grid[-1] == pytest.approx(1 - step)
  assert 0.5 in grid  # the fixed threshold is on the grid
  for fold in report["folds"]:  # each half's thresholds come off the grid
    for th in fold["thresholds_tuned_raw"].values():
      assert np.isclose(grid, th).any(), th
  protocol = report["protocol"]
  assert protocol["name"] == "challenge" and protocol["frame_stride"] == 1
  assert report["secondary"]["strided"]["frame_stride"] == config.data.frame_stride
