# Two commands do all set-up on a fresh machine with Python 3.11 and the package registries:
#   make demo   # virtual environment, packages, assets, then the main job on the embedded default
#   make test   # the same set-up, then the whole test suite (what CI runs)
#   make test-fast  # the inner loop: every module, without the tests marked slow (<= 5 min)
# Re-running is fast: each step is redone only when its inputs changed.

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= workdir/demo
PYTEST_ARGS ?=
# 8 fake CPU devices for the multi-device tests; --durations=15 prints the slowest tests, so
# that growth shows in CI (docs/testing.md).
TEST_XLA_FLAGS := --xla_force_host_platform_device_count=8

.PHONY: demo test test-fast assets clean

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	# The ONNX converter without its declared pins (pyproject.toml says why).
	$(PY) -m pip install --quiet --no-deps 'jax2onnx>=0.17.1,<0.18'
	touch $@

assets: $(VENV)/.installed
	$(PY) -m mlt_flax.assets fetch

demo: assets
	$(PY) -m mlt_flax.main --config=configs/demo.py --workdir=$(WORKDIR) --mode=demo

test: assets
	XLA_FLAGS="$(TEST_XLA_FLAGS)" $(PY) -m pytest -n 2 -q --durations=15 $(PYTEST_ARGS) tests

test-fast: assets
	XLA_FLAGS="$(TEST_XLA_FLAGS)" $(PY) -m pytest -n 2 -q --durations=15 -m "not slow" $(PYTEST_ARGS) tests

clean:
	rm -rf $(VENV) data/assets
