"""A mutation check: does each scoring module have a test that fails when its code is wrong?

  nice -n 19 python -m benchmarks.mutation_check [--modules=metrics,losses,tuning,alignment]
      [--only=metrics:120] [--sample=4 --offset=0] [--timeout=120] [--out=workdir/mutation.json]

For each module, every mutation point of its code is changed ONE at a time and the module's
fast tests (TESTS below) are run against the changed copy; a mutant that no test fails
"survives". The mutations (by the AST, so comments and docstrings are never touched):

  arithmetic   + <-> -, * <-> /, // -> /, ** -> *, and the same for += -= *= /=
  comparison   < <-> <=, > <-> >=, == <-> !=, is <-> is not, in <-> not in
  boolean      and <-> or, `not x` -> x, `-x` -> x
  constants    an int n -> n + 1 (1 -> 0), a float x -> x + 1 (0.5 -> 1.5, 0.0 -> 1.0),
               True <-> False

Code inside a `raise` statement (the error's message) is left alone; its condition is
mutated. The check runs in a copy of the repository in a temporary folder (the worktree is
never changed): one worker per module imports the libraries once (JAX eager: the loss tests'
arrays are tiny), then forks a child per mutant that replaces the module's code in place (so
every importer sees the mutant) and runs pytest on the module's tests; a mutant whose tests
run past --timeout counts as killed (a hang is a failure). --sample=K --offset=J runs every
K-th mutant only (the J-th share). It prints one line per mutant and at the end the
survivors, with file:line, the original code and the mutant; --out also writes them as JSON.
docs/testing.md lists the survivors of the last run, the time it took, and why each
remaining one is harmless (an equivalent mutant: same results for every input).

Run it under `nice -n 19`: it is CPU-bound, one pytest run per mutant.
"""

import ast
import copy
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from absl import flags

from benchmarks import cli

REPO = pathlib.Path(__file__).resolve().parents[1]
# module -> the fast tests that specify it (run with -x: the first failure kills the mutant).
TESTS = {
    "metrics": ["tests/test_metrics.py", "tests/test_tuning.py",
                "tests/test_tuning_mutants.py"],
    "tuning": ["tests/test_tuning.py", "tests/test_tuning_mutants.py"],
    "losses": ["tests/test_losses.py"],
    "alignment": ["tests/test_alignment.py"],
}
COPIED = ("mlt_flax", "configs", "tests", "benchmarks", "pyproject.toml")

_BINOP_SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
                ast.FloorDiv: ast.Div, ast.Pow: ast.Mult}
_CMP_SWAPS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
              ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
              ast.In: ast.NotIn, ast.NotIn: ast.In}
_BOOL_SWAPS = {ast.And: ast.Or, ast.Or: ast.And}


def _docstring_nodes(tree):
  """The Constant nodes that are docstrings (never mutated)."""
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
      body = node.body
      if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        out.add(id(body[0].value))
  return out


def _raise_nodes(tree):
  """Every node inside a raise statement's exception (its message is not behaviour)."""
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Raise):
      for sub in ast.walk(node):
        out.add(id(sub))
  return out


def _mutations(node):
  """[(description of the change, function mutating a deep copy of `node` in place)]."""
  out = []
  if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in _BINOP_SWAPS:
    new = _BINOP_SWAPS[type(node.op)]
    out.append((f"{type(node.op).__name__} -> {new.__name__}",
                lambda n, new=new: setattr(n, "op", new())))
  elif isinstance(node, ast.Compare):
    for i, op in enumerate(node.ops):
      if type(op) in _CMP_SWAPS:
        new = _CMP_SWAPS[type(op)]

        def swap(n, i=i, new=new):
          n.ops[i] = new()
        out.append((f"{type(op).__name__} -> {new.__name__}", swap))
  elif isinstance(node, ast.BoolOp):
    new = _BOOL_SWAPS[type(node.op)]
    out.append((f"{type(node.op).__name__} -> {new.__name__}",
                lambda n, new=new: setattr(n, "op", new())))
  elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
    out.append((f"drop {type(node.op).__name__}", "unwrap"))
  elif isinstance(node, ast.Constant) and type(node.value) in (bool, int, float):
    v = node.value
    if isinstance(v, bool):
      new_value = not v
    elif isinstance(v, int):
      new_value = 0 if v == 1 else v + 1
    else:
      new_value = v + 1.0
    out.append((f"{v!r} -> {new_value!r}",
                lambda n, new_value=new_value: setattr(n, "value", new_value)))
  return out


def mutants(source: str):
  """Every (line, original code, description, mutated module source) of a module."""
  tree = ast.parse(source)
  skip = _docstring_nodes(tree) | _raise_nodes(tree)
  found = []
  for index, node in enumerate(ast.walk(tree)):
    if id(node) in skip or not hasattr(node, "lineno"):
      continue
    for description, change in _mutations(node):
      found.append((index, node.lineno, ast.get_source_segment(source, node) or "",
                    description, change))
  for index, line, original, description, change in found:
    mutated = copy.deepcopy(tree)
    target = list(ast.walk(mutated))[index]
    if change == "unwrap":
      # Replace the UnaryOp by its operand wherever its parent holds it.
      for parent in ast.walk(mutated):
        for field, value in ast.iter_fields(parent):
          if value is target:
            setattr(parent, field, target.operand)
          elif isinstance(value, list):
            for k, item in enumerate(value):
              if item is target:
                value[k] = target.operand
    else:
      change(target)
    yield line, " ".join(original.split())[:80], description, ast.unparse(mutated)


def _run_forked(module, mutated: str, tests, timeout: float) -> str:
  """'killed', 'survived' or 'timeout' (killed) for `tests` with mlt_flax.<module> replaced by
  the `mutated` source, in a forked child of this (preloaded) worker."""
  pid = os.fork()
  if pid == 0:  # the child: patch the module in place (every importer sees it), run pytest
    rc = 1
    try:
      null = os.open(os.devnull, os.O_WRONLY)
      os.dup2(null, 1)
      os.dup2(null, 2)
      import pytest  # pylint: disable=g-import-not-at-top
      target = sys.modules[f"mlt_flax.{module}"]
      exec(compile(mutated, target.__file__, "exec"), target.__dict__)  # pylint: disable=exec-used
      rc = int(pytest.main(["-x", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                            "-m", "not slow", *tests]))
    except BaseException:  # pylint: disable=broad-except
      rc = 1  # a mutant that does not even import is killed
    os._exit(rc)
  deadline = time.monotonic() + timeout
  while True:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
      break
    if time.monotonic() > deadline:
      os.kill(pid, signal.SIGKILL)
      os.waitpid(pid, 0)
      return "timeout"
    time.sleep(0.05)
  rc = os.waitstatus_to_exitcode(status)
  if rc == 0:
    return "survived"
  if rc in (2, 3, 4):  # interrupted, internal error or usage: not a verdict
    return f"error: pytest exit code {rc}"
  return "killed"


def worker(module: str, only_lines, timeout: float, sample: int = 1, offset: int = 0):
  """Runs inside the repository copy: preloads the libraries once, then forks per mutant.
  Prints one JSON line per mutant."""
  sys.path.insert(0, os.getcwd())
  # Eager JAX: the loss tests' arrays are tiny, and compiling them anew in every child would
  # cost more than running them.
  os.environ["JAX_DISABLE_JIT"] = "1"
  sys.path.insert(1, os.path.join(os.getcwd(), "tests"))
  import jax  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  import cv2  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  import pytest  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  import sklearn.metrics  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  import importlib  # pylint: disable=g-import-not-at-top
  for name in TESTS:
    importlib.import_module(f"mlt_flax.{name}")
  importlib.import_module("mlt_flax.face_models")
  source = pathlib.Path("mlt_flax", f"{module}.py").read_text()
  tests = [t for t in TESTS[module] if pathlib.Path(t.split("::")[0]).exists()]
  baseline = _run_forked(module, source, tests, timeout)
  print(json.dumps(dict(baseline=baseline, tests=tests)), flush=True)
  if baseline != "survived":
    return
  for k, (line, original, description, mutated) in enumerate(mutants(source)):
    if (only_lines and line not in only_lines) or k % sample != offset:
      continue
    verdict = _run_forked(module, mutated, tests, timeout)
    print(json.dumps(dict(module=module, line=line, code=original, mutation=description,
                          verdict=verdict)), flush=True)


def _define_flags() -> None:
  flags.DEFINE_list("modules", list(TESTS), "Modules of mlt_flax/ to mutate.")
  flags.DEFINE_string("only", "", "module:line[,module:line]: only the mutants on those lines.")
  flags.DEFINE_float("timeout", 120, "Seconds a mutant's tests may take.")
  flags.DEFINE_string("out", "", "Also write every mutant's verdict here (JSON).")
  flags.DEFINE_integer("sample", 1, "Run every SAMPLE-th mutant only (a quick check on a busy "
                       "machine).")
  flags.DEFINE_integer("offset", 0, "Which of the SAMPLE shares.")
  flags.DEFINE_string("worker", "", "Internal: the module a forked worker mutates.")


def main():
  args = flags.FLAGS
  only = [tuple(x.split(":")) for x in args.only.split(",") if x]
  if args.worker:
    worker(args.worker, {int(line) for m, line in only if m == args.worker}, args.timeout,
           args.sample, args.offset)
    return
  t0 = time.perf_counter()
  results = []
  with tempfile.TemporaryDirectory(prefix="mutation_") as tmp:
    root = pathlib.Path(tmp)
    for name in COPIED:
      src = REPO / name
      (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
    if (REPO / "data" / "assets").exists():
      (root / "data").mkdir()
      os.symlink((REPO / "data" / "assets").resolve(), root / "data" / "assets")
    env = dict(os.environ, PYTHONPATH=str(root),
               XLA_FLAGS="--xla_force_host_platform_device_count=8")
    for module in args.modules:
      if only and module not in {m for m, _ in only}:
        continue
      with subprocess.Popen(
          [sys.executable, "-m", "benchmarks.mutation_check", f"--worker={module}",
           f"--timeout={args.timeout}", f"--only={args.only}", f"--sample={args.sample}",
           f"--offset={args.offset}"], cwd=root, env=env,
          stdout=subprocess.PIPE, text=True) as proc:
        first = json.loads(proc.stdout.readline() or '{"baseline": "no output"}')
        if first["baseline"] != "survived":
          sys.exit(f"{module}: its tests fail on the unchanged code ({first['baseline']})")
        print(f"{module}: tests {' '.join(first['tests'])}", flush=True)
        for k, line in enumerate(proc.stdout, 1):
          r = json.loads(line)
          results.append(r)
          print(f"  [{k}] {module}.py:{r['line']} {r['mutation']:16s} {r['verdict']:9s} "
                f"{r['code']}", flush=True)
  survivors = [r for r in results if r["verdict"] == "survived"]
  errors = [r for r in results if r["verdict"].startswith("error")]
  print(f"\n{len(results)} mutants, {len(results) - len(survivors) - len(errors)} killed, "
        f"{len(survivors)} survived, {len(errors)} errors, {time.perf_counter() - t0:.0f}s")
  for r in survivors + errors:
    print(f"  {r['verdict']}: {r['module']}.py:{r['line']} {r['mutation']}: {r['code']}")
  if args.out:
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
  cli.run(_define_flags, main)
