"""Where the time of one compiled call goes: a jax.profiler trace, summed by HLO op kind.

XLA:CPU records one trace event per executed thunk (an HLO op or fusion), named by the op in
its `hlo_op` argument. `trace_ops` runs a call once under the profiler, reads the Perfetto
trace back, and sums each op's time into convolutions, matrix products and the rest, which it
tells apart by reading the compiled module's HLO text (a fusion is what the computation it
calls holds). A convolution that XLA rewrote as a dot (1x1 kernels) is still a convolution:
the op's source (`op_name` metadata) says so. Each class also gets the FLOPs its ops execute
(from the HLO shapes, zero taps of dilated inputs included: the work done, not the model's
useful FLOPs), so that FLOPs / time can be held against the machine's peak.

The trace is only a measurement where each event lasts as long as its op's work: Eigen
convolutions run asynchronously on a thread pool and their event is their launch. The
benchmark therefore traces on one core with Eigen synchronous
(`--xla_cpu_multi_thread_eigen=false`), where op time must account for the wall time
(`coverage` near 1) and no class may run faster than the one-core matmul peak.

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
import time

import numpy as np

TOP_PER_KIND = 4


def trace_ops(fn, compiled) -> dict:
  """Runs fn() once under jax.profiler and sums the time of each HLO op of `compiled`.

  Ops can run on several threads at once, so the sum can exceed the wall time. Returns
  milliseconds by kind (conv_ms, dot_ms, other_ms), their total_ms, the FLOPs executed by
  kind (conv_flops, dot_flops), the other ops' time by what they belong to (other_split_ms:
  OTHER_KINDS), the traced call's wall time (wall_ms), the largest single op: top_ms, and
  top_op (its name, output shape, window and source layer), and the TOP_PER_KIND largest ops
  of each other-kind (largest_other), which say what an other-kind's time is.
  """
  lines, bodies = _hlo_index(compiled.as_text())
  per_op, counts = collections.Counter(), collections.Counter()
  events, wall_ms = _profile(fn)
  for event in events:
    op = (event.get("args") or {}).get("hlo_op")
    if event.get("ph") == "X" and op in lines:  # a complete event of one of our ops
      per_op[op] += event.get("dur", 0) / 1e3  # microseconds -> ms
      counts[op] += 1
  kinds, work, rest = collections.Counter(), collections.Counter(), collections.Counter()
  for op, ms in per_op.items():
    kind = _op_kind(lines[op], bodies)
    kinds[kind] += ms
    work[kind] += counts[op] * _op_flops(lines[op], bodies, lines)
    if kind == "other":
      rest[_other_kind(lines[op], bodies)] += ms
  top, top_ms = per_op.most_common(1)[0] if per_op else ("none", 0.0)
  largest = collections.defaultdict(list)  # the few largest ops of each other-kind
  for op, ms in per_op.most_common():
    if _op_kind(lines[op], bodies) == "other":
      kind = _other_kind(lines[op], bodies)
      if len(largest[kind]) < TOP_PER_KIND:
        largest[kind].append(f"{ms:.0f} ms {op}: {_describe(lines[op])}")
  return {"conv_ms": kinds["conv"], "dot_ms": kinds["dot"], "other_ms": kinds["other"],
          "total_ms": sum(kinds.values()), "conv_flops": work["conv"],
          "dot_flops": work["dot"], "other_split_ms": dict(rest.most_common()),
          "wall_ms": wall_ms, "top_ms": top_ms,
          "top_op": f"{top}: {_describe(lines.get(top, ''))}",
          "largest_other": dict(largest)}


def _profile(fn) -> tuple[list[dict], float]:
  """The trace events of one fn() call under jax.profiler, and the call's wall ms."""
  import jax  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as logdir:
    with jax.profiler.trace(logdir, create_perfetto_trace=True):
      start = time.perf_counter()
      fn()
      wall_ms = (time.perf_counter() - start) * 1e3
    path = max(pathlib.Path(logdir).rglob("perfetto_trace.json.gz"), key=os.path.getmtime)
    with gzip.open(path) as f:
      trace = json.load(f)
  return (trace["traceEvents"] if isinstance(trace, dict) else trace), wall_ms


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


def _called_text(line: str, bodies: dict) -> str:
  """An instruction's line and the bodies of the computations it calls."""
  called = re.findall(r"(?:calls|to_apply)=%?([\w.\-]+)", line)
  return line + "\n" + "\n".join(bodies.get(c, "") for c in called)


def _op_kind(line: str, bodies: dict) -> str:
  """'conv', 'dot' or 'other': what an HLO instruction (or the fusion it calls) computes. A
  dot whose source is a convolution (XLA rewrites 1x1 convolutions as dots) is 'conv'."""
  text = _called_text(line, bodies)
  if "convolution(" in text or re.search(r" dot\(.*conv_general_dilated", text):
    return "conv"
  if " dot(" in text:
    return "dot"
  return "other"


# What an op that is neither a convolution nor a matrix product belongs to, by its source.
OTHER_KINDS = ("batchnorm", "pooling", "copy", "model", "input", "update", "no_source")
# Sources of the input side of a step: augmentation, resizing and the random numbers they draw
# (mixup's Beta variates are gamma rejection-sampling loops).
_INPUT_SOURCES = ("augment", "resize", "_beta", "_gamma", "_uniform", "threefry", "bernoulli",
                  "randint", "_normal")
# A BatchNorm op's source: Flax's BatchNorm, or the `bn` of the backbones' ConvBN.
_BATCHNORM_SOURCE = r"(?i)batch_?norm|/bn\b"
# Pooling, forward and backward: XLA:CPU writes a max pool's gradient as a reduce-window over
# (value, index) pairs and a select-and-scatter, which keep no source.
_POOLING_OPCODES = ("reduce-window(", "select-and-scatter(")


def _other_kind(line: str, bodies: dict) -> str:
  """One of OTHER_KINDS: BatchNorm (statistics, normalisation, their gradients), pooling
  (max and average pools and their gradients), a layout copy or transpose, the rest of the
  model's forward and backward pass (activations, attention's softmax, the loss), the input
  side (augmentation, resize, random numbers), what follows the gradient (the optimiser
  update, metrics, the NaN guard), or an op XLA made without a source (no_source)."""
  text = _called_text(line, bodies)
  sources = re.findall(r'op_name="([^"]*)"', text)
  if any(re.search(_BATCHNORM_SOURCE, s) for s in sources):
    return "batchnorm"
  if any(op in text for op in _POOLING_OPCODES) or any("pool" in s for s in sources):
    return "pooling"
  opcode = re.match(r"\S+ ([\w\-]+)\(", line)
  if opcode and opcode.group(1) in ("copy", "transpose", "copy-start", "copy-done"):
    return "copy"
  if any("jvp(" in s or "MLT" in s for s in sources):
    return "model"
  if any(k in s for s in sources for k in _INPUT_SOURCES):
    return "input"
  return "update" if sources else "no_source"


def _dims(shape: str) -> list[int]:
  """[16, 35, 35, 288] of 'f32[16,35,35,288]{3,2,1,0}'."""
  match = re.search(r"\[([\d,]*)\]", shape)
  return [int(d) for d in match.group(1).split(",") if d] if match else []


def _op_flops(line: str, bodies: dict, lines: dict) -> float:
  """FLOPs (2 per multiply-add) of the convolutions and dots an instruction executes."""
  total = 0.0
  for inner in _called_text(line, bodies).splitlines():
    match = re.match(r"\s*(\S+) (convolution|dot)\(%?([\w.\-]+), %?([\w.\-]+)\)", inner)
    if not match:
      continue
    out, op, lhs, rhs = match.groups()
    out_size = float(np.prod(_dims(out)))
    if op == "dot":
      contracting = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", inner)
      lhs_dims = _dims(lines.get(lhs, ""))
      k = np.prod([lhs_dims[int(d)] for d in contracting.group(1).split(",") if d]) if (
          contracting and lhs_dims) else 0
    else:  # each output element: kernel spatial taps x input features per group
      labels = re.search(r"dim_labels=\w+_(\w+)->", inner)
      kernel = _dims(lines.get(rhs, ""))
      k = np.prod(kernel) / kernel[labels.group(1).index("o")] if labels and kernel else 0
    total += 2.0 * out_size * float(k)
  return total


def _describe(line: str) -> str:
  """The output shape, window and source layer of an HLO line, briefly."""
  shape = line.split(" ", 1)[0].split("{")[0]
  window = re.search(r"window=\{([^}]*)\}", line)
  source = re.search(r'op_name="([^"]*)"', line)
  parts = [shape, f"window {window.group(1)}" if window else ""]
  if source:  # after the jit(...) name: transpose(jvp(...)) marks the backward pass
    parts.append("/".join(source.group(1).split("/")[1:]))
  return " ".join(p for p in parts if p)
