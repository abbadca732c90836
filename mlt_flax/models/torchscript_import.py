"""Import the FID InceptionV3 TorchScript archive into Flax variables, without torch.

A TorchScript file is a zip: `<top>/data.pkl` (a pickle of the module tree whose tensors are
persistent references) and `<top>/data/<key>` (raw little-endian tensor storages). We unpickle
it with stand-in classes, rebuild every tensor as a numpy array, and map the archive's names
(`layers.mixed_3.tower.conv_2.weight`, ...) onto the Flax trunk's (`Mixed_6a/branch3x3dbl_3/...`).

Every source tensor must be used exactly once and every target variable filled, or
`WeightImportError` names the first mismatch (a name or a shape).
"""

import collections
import pathlib
import pickle
import zipfile

import numpy as np

from mlt_flax.models import inception_v3


class WeightImportError(ValueError):
  """The archive is corrupt, foreign, or does not match the Flax trunk."""


_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ByteStorage": np.uint8,
}


class _TorchObject:
  """Stand-in for any `__torch__.*` class: keeps the attributes the pickle restores."""

  def __setstate__(self, state):
    self.__dict__.update(state)


def _rebuild_tensor(storage, offset, size, stride, *unused):
  del unused  # requires_grad, backward hooks, metadata
  itemsize = storage.itemsize
  return np.lib.stride_tricks.as_strided(
      storage[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)).copy()


class _Unpickler(pickle.Unpickler):

  def __init__(self, file, zf: zipfile.ZipFile, top: str, source: str):
    super().__init__(file)
    self._zf, self._top, self._source = zf, top, source

  def find_class(self, module, name):
    if module.startswith("__torch__"):
      return type(name, (_TorchObject,), {})
    if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
      return _rebuild_tensor
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    if module == "torch.jit._pickle" and name.startswith("build_") and name.endswith("list"):
      return list  # TorchScript's typed lists (e.g. a conv's padding) pickle as these
    if module == "torch" and name in _DTYPES:
      return _DTYPES[name]
    raise WeightImportError(f"{self._source}: unexpected object {module}.{name} in the pickle; "
                            "is this a TorchScript archive of the FID InceptionV3?")

  def persistent_load(self, pid):
    kind, dtype, key, _, numel = pid
    if kind != "storage":
      raise WeightImportError(f"{self._source}: unknown persistent id {pid!r}")
    member = f"{self._top}/data/{key}"
    try:
      raw = self._zf.read(member)
    except (KeyError, zipfile.BadZipFile, OSError) as e:
      raise WeightImportError(f"{self._source}: cannot read tensor storage {member}: {e}") from e
    arr = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
    if arr.size != numel:
      raise WeightImportError(f"{self._source}: storage {member} holds {arr.size} values, "
                              f"expected {numel} (truncated?)")
    return arr


def read_archive(path) -> dict[str, np.ndarray]:
  """All tensors of a TorchScript archive, by dotted attribute path (without the root)."""
  path = pathlib.Path(path)
  try:
    zf = zipfile.ZipFile(path)
  except (zipfile.BadZipFile, OSError) as e:
    raise WeightImportError(f"{path}: not a TorchScript archive (not a readable zip: {e})") from e
  with zf:
    pickles = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
      raise WeightImportError(f"{path}: not a TorchScript archive (no <top>/data.pkl entry)")
    top = pickles[0].split("/")[0]
    try:
      with zf.open(pickles[0]) as f:
        root = _Unpickler(f, zf, top, str(path)).load()
    except WeightImportError:
      raise
    except Exception as e:  # a damaged pickle raises many kinds of errors
      raise WeightImportError(f"{path}: corrupt TorchScript pickle ({type(e).__name__}: {e})") from e

  tensors = {}

  def walk(obj, prefix):
    for k, v in vars(obj).items():
      if isinstance(v, np.ndarray):
        tensors[prefix + k] = v
      elif isinstance(v, _TorchObject):
        walk(v, prefix + k + ".")

  if not isinstance(root, _TorchObject):
    raise WeightImportError(f"{path}: the pickle's root is not a TorchScript module")
  walk(root, "")
  return tensors


# Archive module names -> Flax trunk names. The archive nests blocks as `layers.mixed_<i>` and
# branches as `tower*`; the Flax trunk uses TF-slim block names and torchvision branch names.
_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
         "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
      "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
      "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"}
_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
      "tower.conv_2": "branch3x3dbl_3"}
_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
      "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1",
      "tower_1.conv_1": "branch7x7dbl_2", "tower_1.conv_2": "branch7x7dbl_3",
      "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
      "tower_2.conv": "branch_pool"}
_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
      "tower_1.conv": "branch7x7x3_1", "tower_1.conv_1": "branch7x7x3_2",
      "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"}
_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
      "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
      "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
      "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}
_BLOCKS = {"mixed": ("Mixed_5b", _A), "mixed_1": ("Mixed_5c", _A), "mixed_2": ("Mixed_5d", _A),
           "mixed_3": ("Mixed_6a", _B), "mixed_4": ("Mixed_6b", _C), "mixed_5": ("Mixed_6c", _C),
           "mixed_6": ("Mixed_6d", _C), "mixed_7": ("Mixed_6e", _C), "mixed_8": ("Mixed_7a", _D),
           "mixed_9": ("Mixed_7b", _E), "mixed_10": ("Mixed_7c", _E)}
_ROOT = "net.layers."


def _conv_module_path(layer: str) -> tuple[str, ...] | None:
  """'mixed_3.tower.conv_2' -> ('Mixed_6a', 'branch3x3dbl_3'); None if unknown."""
  if layer in _STEM:
    return (_STEM[layer],)
  block, _, rest = layer.partition(".")
  if block in _BLOCKS and rest in _BLOCKS[block][1]:
    return (_BLOCKS[block][0], _BLOCKS[block][1][rest])
  return None


def to_flax_variables(tensors: dict[str, np.ndarray], source: str = "archive") -> dict:
  """Archive tensors -> {'params': ..., 'batch_stats': ...} of `InceptionV3`, as nested dicts.

  Conv weights go from OIHW to HWIO. BatchNorm: beta -> params/bn/bias, mean and var ->
  batch_stats/bn/{mean,var}. Every tensor is consumed once or this raises.
  """
  params, stats = {}, {}
  where = {"weight": (params, "conv", "kernel"), "beta": (params, "bn", "bias"),
           "mean": (stats, "bn", "mean"), "var": (stats, "bn", "var")}
  for name, value in tensors.items():
    layer, _, leaf = name.rpartition(".")
    module = _conv_module_path(layer[len(_ROOT):]) if layer.startswith(_ROOT) else None
    if module is None or leaf not in where:
      raise WeightImportError(f"{source}: tensor {name!r} {value.shape} has no place in the "
                              "Flax InceptionV3 trunk")
    tree, sub, key = where[leaf]
    node = tree
    for part in (*module, sub):
      node = node.setdefault(part, {})
    if key in node:
      raise WeightImportError(f"{source}: two tensors map onto {'/'.join((*module, sub, key))}")
    node[key] = value.transpose(2, 3, 1, 0) if leaf == "weight" else value
  return {"params": params, "batch_stats": stats}


def check_matches(imported: dict, expected: dict, source: str = "archive") -> None:
  """Raises naming the first variable missing, extra, or of another shape than `expected`."""
  flat_in = _flatten(imported)
  flat_ex = _flatten(expected)
  for k, v in flat_ex.items():
    if k not in flat_in:
      raise WeightImportError(f"{source}: Flax variable {k} {tuple(v.shape)} is not filled by "
                              "any archive tensor")
    if tuple(flat_in[k].shape) != tuple(v.shape):
      raise WeightImportError(f"{source}: shape mismatch at {k}: archive gives "
                              f"{tuple(flat_in[k].shape)}, the trunk expects {tuple(v.shape)}")
  for k, v in flat_in.items():
    if k not in flat_ex:
      raise WeightImportError(f"{source}: archive tensor mapped to {k} {tuple(v.shape)} has no "
                              "matching Flax variable")


def _flatten(tree, prefix=()):
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict) or hasattr(v, "items"):
      out.update(_flatten(v, prefix + (k,)))
    else:
      out["/".join(prefix + (k,))] = v
  return out


def load_inception_v3(path, expected: dict | None = None) -> dict:
  """Reads the FID InceptionV3 archive at `path` into Flax variables of `InceptionV3`.

  `expected`: the variables (or their ShapeDtypeStructs) of the trunk being filled; by default
  those of `InceptionV3()` at 299x299. Returns float32 numpy arrays in the same nesting.
  """
  tensors = read_archive(path)
  variables = to_flax_variables(tensors, str(path))
  if expected is None:
    expected = _reference_shapes()
  check_matches(variables, expected, str(path))
  return {c: _cast(variables[c]) for c in variables}


def _cast(tree):
  return {k: _cast(v) if isinstance(v, dict) else np.asarray(v, np.float32)
          for k, v in tree.items()}


def _reference_shapes():
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  model = inception_v3.InceptionV3()
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 299, 299, 3))))
