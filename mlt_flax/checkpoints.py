"""Orbax checkpoints of the train state: save, automatic resume, and pretrain -> fine-tune init.

One `ocp.CheckpointManager` per workdir (`<workdir>/checkpoints/<step>/`), saving
asynchronously, keeping the last K checkpoints plus the best by validation mean F1. Each
checkpoint holds the train state (global arrays, saved as they are) and the config as JSON.
Orbax writes into a temporary folder and renames it when complete, so a run killed mid-save
leaves no checkpoint that looks complete; `restore_latest` also falls back to the previous
checkpoint when the newest one cannot be read.
"""

import errno
import json
import os
import pathlib
import re
import tempfile
import weakref
from typing import Any

from absl import logging
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from mlt_flax import aus
from mlt_flax import configuration

BEST_METRIC = "mean_f1"  # validation mean F1 at threshold 0.5


class CheckpointError(RuntimeError):
  """A checkpoint cannot be used with this config."""


class CheckpointMismatch(CheckpointError):
  """A readable checkpoint whose arrays are not the ones the run's config builds."""


class CheckpointUnreadable(CheckpointError):
  """A checkpoint whose files cannot be read (truncated, corrupted): the only kind that
  `restore_latest` sets aside."""


class ConfigChanged(CheckpointError):
  """A workdir's run was trained with a config that differs where the state or the recipe
  depends on it: resuming it with this one is refused."""


def manager(workdir, config: ml_collections.ConfigDict) -> ocp.CheckpointManager:
  """The workdir's manager: keep the last config.checkpoint.keep plus the best one."""
  c = config.checkpoint
  metric = lambda m: m[BEST_METRIC]
  policy = pp.AnyPreservationPolicy([
      pp.LatestN(n=c.keep),
      pp.BestN(get_metric_fn=metric, reverse=False, n=1, keep_checkpoints_without_metrics=False),
  ])
  # best_fn is what makes Orbax write each step's metrics and rank steps by them in
  # best_step(); the BestN policy alone keeps the best one from deletion, no more.
  options = ocp.CheckpointManagerOptions(
      preservation_policy=policy, best_fn=metric, best_mode="max",
      enable_async_checkpointing=c.async_save, create=True, cleanup_tmp_directories=True)
  return ocp.CheckpointManager(pathlib.Path(workdir).absolute() / "checkpoints",
                               options=options)


# The step each manager is writing in the background: the step a later failure belongs to.
_in_flight: "weakref.WeakKeyDictionary[ocp.CheckpointManager, int]" = (
    weakref.WeakKeyDictionary())


def save(mngr: ocp.CheckpointManager, step: int, state, config, metrics=None) -> None:
  """Starts saving `state` at `step` (asynchronously); a failed write is a CheckpointError.

  A write that fails (full disk, read-only folder) leaves the earlier checkpoints as they
  were: Orbax writes into a temporary folder and only renames it when complete. The previous
  background save is waited for first (Orbax would wait anyway), so that its failure is
  reported as its own step's.
  """
  wait(mngr)
  try:
    _check_writable(pathlib.Path(mngr.directory))
    _in_flight[mngr] = step
    mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        config=ocp.args.JsonSave(config.to_dict())), metrics=metrics, force=True)
  except Exception as e:  # pylint: disable=broad-except
    raise _write_error(mngr, step, e) from e


def _check_writable(directory: pathlib.Path) -> None:
  """Raises OSError now if `directory` cannot take a new file (read-only, no permission).

  Orbax creates a step's folder in a background thread; when that fails, the save's other
  threads wait for the folder's signal until a timeout (minutes) instead of failing.
  """
  with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check-"):
    pass


def wait(mngr: ocp.CheckpointManager) -> None:
  """Waits for the background save; its failure is a CheckpointError naming its step."""
  try:
    mngr.wait_until_finished()
  except Exception as e:  # pylint: disable=broad-except
    raise _write_error(mngr, _in_flight.get(mngr, mngr.latest_step()), e) from e
  finally:
    _in_flight.pop(mngr, None)


def _write_error(mngr, step, e) -> "CheckpointError":
  intact = [s for s in mngr.all_steps() if s != step]
  return CheckpointError(
      f"could not write checkpoint step {step} to {mngr.directory} ({type(e).__name__}: "
      f"{_brief(str(e))}); earlier checkpoints {intact} are intact")


def _brief(message: str, head: int = 100, tail: int = 140) -> str:
  """A message's first line, its middle cut but never its cause.

  Storage errors name the cause anywhere: Python's OSError last, TensorStore's in the middle
  ("[os_error_code=28] ... No space left on device ...") before a long spec.
  """
  line = message.splitlines()[0] if message else ""
  if len(line) <= head + tail:
    return line
  cause = _os_cause(message)
  return f"{line[:head]} ... {cause}" if cause else f"{line[:head]} ... {line[-tail:]}"


def _os_cause(message: str) -> str | None:
  """The operating system's words for the error `message` reports, if it reports one."""
  code = re.search(r"os_error_code='?(\d+)", message)
  if code:
    return f"[Errno {code.group(1)}] {os.strerror(int(code.group(1)))}"
  lowered = message.lower()
  for number in sorted(errno.errorcode):
    if os.strerror(number).lower() in lowered:
      return f"[Errno {number}] {os.strerror(number)}"
  return None


def select_step(mngr: ocp.CheckpointManager, which: str = "best") -> int:
  """The step of checkpoint `which`: 'best' (by validation mean F1; the latest if none was
  evaluated), 'latest' or a step number."""
  steps = mngr.all_steps()
  if not steps:
    raise FileNotFoundError(f"no checkpoint in {mngr.directory}")
  if which == "best":
    return mngr.best_step() if mngr.best_step() is not None else mngr.latest_step()
  if which == "latest":
    return mngr.latest_step()
  if not str(which).isdigit():
    raise ValueError(f"checkpoint {which!r}: expected 'best', 'latest' or a step number")
  if int(which) not in steps:
    raise FileNotFoundError(f"no checkpoint for step {which} in {mngr.directory}; "
                            f"there are {sorted(steps)}")
  return int(which)


def _leaf_signature(tree) -> list:
  """The sorted (shape, dtype) of every array of a tree of arrays, ShapeDtypeStructs or
  Orbax array metadata: what a checkpoint must hold to fit (paths aside, which Orbax and
  JAX spell differently for dataclasses and named tuples)."""
  leaves = jax.tree.leaves(tree, is_leaf=lambda x: hasattr(x, "shape") and hasattr(x, "dtype"))
  return sorted((tuple(int(d) for d in x.shape), str(np.dtype(x.dtype))) for x in leaves)


def _fits(mngr: ocp.CheckpointManager, step: int, abstract_state) -> bool | None:
  """Whether checkpoint `step`'s recorded arrays are the state's (None: no readable record)."""
  try:  # the state item's own record (a manager opened to read has no handler for it)
    recorded = ocp.StandardCheckpointHandler().metadata(
        pathlib.Path(mngr.directory) / str(step) / "state")
    recorded = getattr(recorded, "tree", recorded)
    if recorded is None:
      return None
    return _leaf_signature(recorded) == _leaf_signature(abstract_state)
  except Exception:  # pylint: disable=broad-except
    return None  # the metadata file itself is unreadable


def restore(mngr: ocp.CheckpointManager, step: int, abstract_state):
  """The train state of checkpoint `step`.

  Raises CheckpointMismatch when its recorded arrays (shapes and dtypes) are not the ones
  the run's config builds, CheckpointUnreadable when they are but its files cannot be read
  (or its record cannot be), so that only a damaged checkpoint is ever taken for one.
  """
  # Checked first: Orbax restores an array of another shape without a word (cut or padded).
  if _fits(mngr, step, abstract_state) is False:
    raise CheckpointMismatch(
        f"checkpoint step {step} in {mngr.directory} does not fit the run's config: the "
        "shapes or dtypes of its arrays are not the ones the config builds")
  try:
    return mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state)))["state"]
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointUnreadable(
        f"checkpoint step {step} in {mngr.directory} cannot be read "
        f"({type(e).__name__}: {_brief(str(e))})") from e


def restore_latest(mngr: ocp.CheckpointManager, abstract_state) -> tuple[Any, int] | None:
  """(state, step) from the newest readable checkpoint, or None if there is none.

  abstract_state: ShapeDtypeStructs with shardings, so arrays come back where they live.
  A checkpoint whose files cannot be read (truncated or corrupted) is reported, set aside by
  process 0 (never deleted) and the previous one tried; one that does not fit the config
  (CheckpointMismatch) stops the run, touching nothing.
  """
  for step in sorted(mngr.all_steps(), reverse=True):
    try:
      return restore(mngr, step, abstract_state), step
    except CheckpointUnreadable as e:
      logging.warning("checkpoint at step %d is unreadable (%s); trying the previous one",
                      step, e.__cause__)
      # Set it aside (never delete data) so that this step can be saved again.
      aside = pathlib.Path(mngr.directory) / f"{step}.unreadable"
      if jax.process_index() == 0:
        os.replace(pathlib.Path(mngr.directory) / str(step), aside)
      if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"checkpoint {step} set aside")
      mngr.reload()
      print(f"warning: checkpoint step {step} in {mngr.directory} is unreadable "
            f"({type(e.__cause__).__name__}); moved to {aside.name}, falling back to the previous one")
  return None


def saved_config(workdir) -> dict | None:
  """The config a workdir's run was trained with: its config.json, else the latest
  checkpoint's own copy (as Orbax records it); None for a workdir with neither."""
  workdir = pathlib.Path(workdir)
  path = workdir / "config.json"
  if path.exists():
    try:
      return json.loads(path.read_text())
    except json.JSONDecodeError as e:
      raise CheckpointError(f"{path}: not a JSON config ({e})") from e
  if not (workdir / "checkpoints").is_dir():
    return None
  mngr = _reader(workdir / "checkpoints")
  try:
    step = mngr.latest_step()
    if step is None:
      return None
    return mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
  finally:
    mngr.close()


def check_resumable(workdir, config: ml_collections.ConfigDict) -> None:
  """Raises ConfigChanged (one line: the fields, both values) when `workdir` holds
  checkpoints of a run whose config differs from `config` where the state or the recipe
  depends on it (`configuration.resume_changes`); reads only, writes nothing."""
  folder = pathlib.Path(workdir) / "checkpoints"
  exists = folder.is_dir()
  if jax.process_count() > 1:
    # Process 0 decides for all: it creates the folder in its next step (`manager`), and a
    # process that looked after that would open a reader the others do not, and Orbax's
    # barriers would no longer pair up across processes.
    exists = bool(multihost_utils.broadcast_one_to_all(np.int32(exists)))
  if not exists:
    return
  mngr = _reader(folder)
  try:
    if not mngr.all_steps():
      return  # nothing to resume: the run starts afresh under this config
  finally:
    mngr.close()
  saved = saved_config(workdir)
  changes = configuration.resume_changes(saved or {}, config.to_dict())
  if changes:
    listed = "; ".join(f"{field} {old!r} -> {new!r}" for field, old, new in changes)
    raise ConfigChanged(
        f"{workdir}: refusing to resume its run with another config ({listed}; saved -> "
        f"this run): these fields change the train state or the recipe. Resume with the "
        f"saved values (its config.json), or train in another --workdir")


def _reader(directory) -> ocp.CheckpointManager:
  """A manager to read `directory` with: no folder created, no temporary one cleaned up, and
  it is never given a step to save (another run's checkpoints are never touched). Orbax's own
  read_only option would say so on the terminal, twice."""
  return ocp.CheckpointManager(
      pathlib.Path(directory).absolute(),
      options=ocp.CheckpointManagerOptions(create=False, cleanup_tmp_directories=False,
                                           best_fn=lambda m: m[BEST_METRIC], best_mode="max"))


def load_params_from(path, target_params, target_stats, label_space: str,
                     which: str = "best"):
  """Params and batch stats of another run's checkpoint, mapped onto this model.

  path: a workdir or its checkpoints folder (the checkpoint `which` picks: 'best' by
  validation mean F1, 'latest' or a step, as Orbax records them: temporary folders of a save
  cut short and set-aside ones are not checkpoints), or one checkpoint's step folder. Label
  tokens are mapped by AU name from the source run's label space (its saved config) to
  `label_space`; AUs new to this model keep their fresh initialisation. Every other parameter
  must exist with the same shape. Returns (params, batch_stats, report dict of
  loaded/new/dropped).
  """
  path = pathlib.Path(path)
  if (path / "checkpoints").is_dir():
    path = path / "checkpoints"
  if (path / "state").is_dir():  # one checkpoint's folder
    mngr = _reader(path.parent)
    steps = mngr.all_steps()
    if not (path.name.isdigit() and int(path.name) in steps):
      mngr.close()  # a set-aside or temporary folder: never its parent's best instead
      raise CheckpointError(f"config.init_from={str(path)!r}: not a checkpoint Orbax records "
                            f"(the checkpoints there: {list(steps) or 'none'})")
    step = int(path.name)
  else:
    mngr = _reader(path) if path.is_dir() else None
    step = None
  try:
    if mngr is None or not mngr.all_steps():
      raise CheckpointError(f"config.init_from={str(path)!r}: no checkpoint found there")
    if step is None:
      try:
        step = select_step(mngr, which)
      except (FileNotFoundError, ValueError) as e:
        raise CheckpointError(f"config.init_from={str(path)!r}: {e}") from e
    step_dir = pathlib.Path(mngr.directory) / str(step)
    restored_all = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(), config=ocp.args.JsonRestore()))
  finally:
    if mngr is not None:
      mngr.close()
  source_config, restored = restored_all["config"], restored_all["state"]
  src_params, src_stats = restored["params"], restored.get("batch_stats", {})
  src_space = (source_config or {}).get("data", {}).get("label_space", label_space)
  src_names = aus.names(aus.label_space(src_space))
  dst_names = aus.names(aus.label_space(label_space))

  def merge(src, dst, prefix):
    out = {}
    for k, v in dst.items():
      name = f"{prefix}/{k}" if prefix else k
      if isinstance(v, dict):
        if k not in src:
          raise CheckpointError(f"{step_dir}: has no parameter {name}")
        out[k] = merge(src[k], v, name)
        continue
      if k not in src:
        raise CheckpointError(f"{step_dir}: has no parameter {name}")
      s = np.asarray(src[k])
      if name == "label_decoder/label_tokens":
        rows = [np.asarray(v[i]) if n not in src_names else s[src_names.index(n)]
                for i, n in enumerate(dst_names)]
        out[k] = np.stack(rows).astype(v.dtype)
      elif s.shape != tuple(v.shape):
        raise CheckpointError(f"{step_dir}: parameter {name} has shape {s.shape} in the "
                              f"checkpoint but {tuple(v.shape)} in this model")
      else:
        out[k] = s.astype(v.dtype)
    return out

  params = merge(src_params, jax.device_get(target_params), "")
  stats = merge(src_stats, jax.device_get(target_stats), "")
  report = {
      "source": str(step_dir),
      "loaded_label_tokens": [n for n in dst_names if n in src_names],
      "new_label_tokens": [n for n in dst_names if n not in src_names],
      "dropped_label_tokens": [n for n in src_names if n not in dst_names],
  }
  return params, stats, report
