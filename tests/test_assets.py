"""Assets come from pinned registry wheels, and a bad cache gets an error saying how to fix it."""

import shutil
import subprocess
import sys

from absl import app
import pytest

from mlt_flax import assets


def test_every_asset_is_present_and_verified():
  # `make test` fetched them; each path() checks size and SHA-256.
  for name in assets.ASSETS:
    assert assets.path(name).stat().st_size == assets.ASSETS[name].size


@pytest.fixture
def cache(tmp_path, monkeypatch):
  monkeypatch.setenv("MLT_FLAX_ASSETS", str(tmp_path))
  return tmp_path


def test_missing_asset_says_how_to_fetch(cache):
  with pytest.raises(assets.AssetError, match=r"missing.*python -m mlt_flax.assets fetch"):
    assets.path("single_face.jpg")


def test_truncated_asset_is_refused(cache):
  good = assets.ASSETS["single_face.jpg"]
  src = assets.DEFAULT_DIR / "single_face.jpg"
  (cache / "single_face.jpg").write_bytes(src.read_bytes()[: good.size // 2])
  with pytest.raises(assets.AssetError, match=r"truncated .*expected 81485.*fetch"):
    assets.path("single_face.jpg")


def test_same_size_wrong_content_is_refused(cache):
  data = bytearray((assets.DEFAULT_DIR / "single_face.jpg").read_bytes())
  data[1000] ^= 0xFF
  (cache / "single_face.jpg").write_bytes(bytes(data))
  with pytest.raises(assets.AssetError, match="wrong SHA-256"):
    assets.path("single_face.jpg")


def test_a_good_copy_is_accepted(cache):
  shutil.copy(assets.DEFAULT_DIR / "multi_face.jpg", cache / "multi_face.jpg")
  assert assets.path("multi_face.jpg") == cache / "multi_face.jpg"


def test_unknown_asset_name():
  with pytest.raises(KeyError, match="unknown asset"):
    assets.path("weights_from_a_hub.bin")


def test_list_command_shows_each_asset_and_its_state(cache, capsys):
  shutil.copy(assets.DEFAULT_DIR / "multi_face.jpg", cache / "multi_face.jpg")
  assets.main(["assets", "list"])
  lines = capsys.readouterr().out.splitlines()
  assert [line.split()[0] for line in lines] == sorted(assets.ASSETS)
  state = {line.split()[0]: line for line in lines}
  assert state["multi_face.jpg"].endswith(" ok")
  assert "missing" in state["single_face.jpg"]


def test_an_unknown_command_is_a_usage_error():
  with pytest.raises(app.UsageError, match="fetch|list"):
    assets.main(["assets", "fetchall"])
  with pytest.raises(app.UsageError):
    assets.main(["assets", "fetch", "list"])


def test_help_names_the_commands():
  # absl's --help prints the module docstring and the flags, then exits with status 1.
  result = subprocess.run([sys.executable, "-m", "mlt_flax.assets", "--help"],
                          capture_output=True, text=True, check=False)
  assert "python -m mlt_flax.assets [fetch]" in result.stdout
  assert "python -m mlt_flax.assets list" in result.stdout
