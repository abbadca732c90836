"""The house rules a reader relies on: who imports whom, and documents that ship with the code."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mlt_flax"


def imported_modules(path: pathlib.Path) -> set[str]:
  """Every module a file imports, as dotted names ('from a import b' gives 'a' and 'a.b')."""
  return _names(ast.walk(ast.parse(path.read_text())))


def _names(nodes) -> set[str]:
  """The modules the import statements among `nodes` name."""
  names = set()
  for node in nodes:
    if isinstance(node, ast.Import):
      names.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      names.add(node.module)
      names.update(f"{node.module}.{a.name}" for a in node.names)
  return names


def package_imports(folder: pathlib.Path) -> set[str]:
  return set().union(*(imported_modules(p) for p in folder.rglob("*.py")))


def test_inference_builds_on_the_runtime_never_on_training():
  for path in (PACKAGE / "evaluate.py", PACKAGE / "predict" / "jax_backend.py"):
    imports = imported_modules(path)
    assert "mlt_flax.runtime" in imports, path
    assert "mlt_flax.train" not in imports, path
  assert "mlt_flax.train" not in package_imports(PACKAGE / "predict")
  assert "mlt_flax.predict" not in imported_modules(PACKAGE / "evaluate.py")
  assert "mlt_flax.evaluate" not in package_imports(PACKAGE / "predict")
  assert "mlt_flax.train" not in imported_modules(PACKAGE / "runtime.py")


# The serving floor: what `predict --model` loads. Each module's own imports (the JAX
# backend, imported on demand by predict.run.load_backend, is the one exception).
SERVING_FLOOR = ("serving.py", "export_format.py", "predict/__init__.py", "predict/__main__.py",
                 "predict/backends.py", "predict/inputs.py", "predict/outputs.py",
                 "predict/annotation.py", "predict/run.py", "cli.py", "console.py",
                 "media.py", "faces.py", "tracking.py", "face_models.py", "metrics.py")
HEAVY = ("jax", "flax", "tensorflow", "tensorflow_datasets", "orbax", "optax",
         "mlt_flax.runtime", "mlt_flax.export", "mlt_flax.input_pipeline",
         "mlt_flax.checkpoints", "mlt_flax.predict.jax_backend")


def top_level_imports(path: pathlib.Path) -> set[str]:
  """The modules a file imports at module level (not inside functions)."""
  return _names(ast.parse(path.read_text()).body)


def test_the_serving_floor_imports_no_training_stack_and_no_cycle():
  for name in SERVING_FLOOR:
    heavy = {m for m in top_level_imports(PACKAGE / name)
             if any(m == h or m.startswith(h + ".") for h in HEAVY)}
    assert not heavy, f"mlt_flax/{name} imports {sorted(heavy)} at load time"
  # serving is below predict: it never imports it back (predict <-> serving was a cycle).
  assert not any(m.startswith("mlt_flax.predict") for m in imported_modules(
      PACKAGE / "serving.py"))
  assert "mlt_flax.export" not in imported_modules(PACKAGE / "serving.py")


def test_the_library_never_imports_an_experiment_config():
  for path in PACKAGE.rglob("*.py"):
    assert not any(m == "configs" or m.startswith("configs.")
                   for m in imported_modules(path)), path


def test_every_document_referred_to_is_in_the_repository():
  # Spelled in pieces so that this file does not name them itself.
  outside = (".." + "/shared", "RECIPE" + ".md", "PERF" + "_NOTES")
  for path in ROOT.rglob("*"):
    if (path.suffix not in (".py", ".md", ".toml", ".sh", ".cfg") and path.name != "Makefile"
        or path.relative_to(ROOT).parts[0] in (".venv", ".git", "workdir", "data")
        or "__pycache__" in path.parts or not path.is_file()):
      continue
    text = path.read_text(errors="replace")
    for word in outside:
      assert word not in text, f"{path} refers to {word}"
  for doc in ("recipe.md", "datasets.md", "performance.md"):
    assert (ROOT / "docs" / doc).is_file()
    assert f"docs/{doc}" in (ROOT / "README.md").read_text(), doc


def test_every_entry_point_defines_its_flags_only_when_run():
  # One CLI style: absl, flags defined in a function called under __main__, so that any
  # module can import any other without defining (or clashing on) flags.
  for path in list(PACKAGE.rglob("*.py")) + list((ROOT / "benchmarks").glob("*.py")):
    tree = ast.parse(path.read_text())
    for node in tree.body:  # module level only
      call = node.value if isinstance(node, ast.Expr) else None
      if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute):
        assert not call.func.attr.startswith("DEFINE_"), f"{path}: flags defined at import"
    imports = imported_modules(path)
    assert "argparse" not in imports, f"{path}: argparse (the CLIs use absl)"


def test_the_readme_layout_names_every_module_and_document():
  readme = (ROOT / "README.md").read_text()
  layout = readme[readme.index("## Layout"):readme.index("## Tests")]
  for path in sorted(PACKAGE.rglob("*.py")):
    parts = path.relative_to(PACKAGE).parts
    if "__pycache__" in parts or path.name == "__init__.py" and len(parts) == 1:
      continue
    # a module by its name; a folder two levels down (data/synthetic/) by the folder's
    name = parts[1] + "/" if len(parts) > 2 else path.stem
    assert name in layout, f"README's layout does not name mlt_flax/{'/'.join(parts)}"
  for doc in sorted((ROOT / "docs").glob("*.md")):
    assert doc.stem in layout, f"README's layout does not name docs/{doc.name}"
  for path in sorted((ROOT / "benchmarks").glob("*.py")):
    if path.stem not in ("__init__", "cli", "timing"):
      assert path.stem in layout, f"README's layout does not name benchmarks/{path.name}"
