"""Where the time of one compiled call goes: a jax.profiler trace, summed by HLO op kind.

XLA:CPU records one trace event per executed thunk (an HLO op or fusion), named by the op in
its `hlo_op` argument. `trace_ops` runs a call once under the profiler, reads the Perfetto
trace back, and sums each op's time into convolutions, dots and the rest, which it tells apart
by reading the compiled module's HLO text (a fusion is what the computation it calls holds).

JAX is imported inside `trace_ops`: the benchmark's parent process imports this module and
must not initialise JAX itself.
"""

import collections
import gzip
import json
import os
import pathlib
import re
import tempfile


def trace_ops(fn, compiled) -> dict:
  """Runs fn() once under jax.profiler and sums the time of each HLO op of `compiled`.

  Ops can run on several threads at once, so the sum can exceed the wall time. Returns
  milliseconds by kind (conv_ms, dot_ms, other_ms), their total_ms, and the largest single op:
  top_ms, and top_op (its name, output shape, window and source layer).
  """
  lines, bodies = _hlo_index(compiled.as_text())
  per_op = collections.Counter()
  for event in _profile(fn):
    op = (event.get("args") or {}).get("hlo_op")
    if event.get("ph") == "X" and op in lines:  # a complete event of one of our ops
      per_op[op] += event.get("dur", 0) / 1e3  # microseconds -> ms
  kinds = collections.Counter()
  for op, ms in per_op.items():
    kinds[_op_kind(lines[op], bodies)] += ms
  top, top_ms = per_op.most_common(1)[0] if per_op else ("none", 0.0)
  return {"conv_ms": kinds["conv"], "dot_ms": kinds["dot"], "other_ms": kinds["other"],
          "total_ms": sum(kinds.values()), "top_ms": top_ms,
          "top_op": f"{top}: {_describe(lines.get(top, ''))}"}


def _profile(fn) -> list[dict]:
  """The trace events of one fn() call under jax.profiler."""
  import jax  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as logdir:
    with jax.profiler.trace(logdir, create_perfetto_trace=True):
      fn()
    path = max(pathlib.Path(logdir).rglob("perfetto_trace.json.gz"), key=os.path.getmtime)
    with gzip.open(path) as f:
      trace = json.load(f)
  return trace["traceEvents"] if isinstance(trace, dict) else trace


def _hlo_index(hlo_text: str) -> tuple[dict, dict]:
  """{instruction name: its HLO line}, {computation name: its body} of a compiled module."""
  lines, bodies, current = {}, {}, None
  for line in hlo_text.splitlines():
    if line and not line[0].isspace() and line.rstrip().endswith("{"):
      current = line.split()[1 if line.startswith("ENTRY") else 0].lstrip("%")
      bodies[current] = []
      continue
    match = re.match(r"^\s*(?:ROOT )?%?([\w.\-]+) = (.*)$", line)
    if match:
      lines[match.group(1)] = match.group(2)
      if current is not None:
        bodies[current].append(match.group(2))
  return lines, {k: "\n".join(v) for k, v in bodies.items()}


def _op_kind(line: str, bodies: dict) -> str:
  """'conv', 'dot' or 'other': what an HLO instruction (or the fusion it calls) computes."""
  called = re.findall(r"(?:calls|to_apply)=%?([\w.\-]+)", line)
  text = line + "\n".join(bodies.get(c, "") for c in called)
  if "convolution(" in text:
    return "conv"
  if " dot(" in text:
    return "dot"
  return "other"


def _describe(line: str) -> str:
  """The output shape, window and source layer of an HLO line, briefly."""
  shape = line.split(" ", 1)[0].split("{")[0]
  window = re.search(r"window=\{([^}]*)\}", line)
  source = re.search(r'op_name="([^"]*)"', line)
  parts = [shape, f"window {window.group(1)}" if window else ""]
  if source:  # after the jit(...) name: transpose(jvp(...)) marks the backward pass
    parts.append("/".join(source.group(1).split("/")[1:]))
  return " ".join(p for p in parts if p)
