# `make test` and `make bench` each bootstrap everything on a fresh machine with Python 3:
# the virtual environment, the dependencies (requirements.txt) and the extension build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
export CUDA_HOME ?= $(if $(wildcard /usr/local/cuda/bin/nvcc),/usr/local/cuda,)

.PHONY: build test bench clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# ninja rebuilds only what changed.
build: $(STAMP)
	$(PY) setup.py --quiet build_ext --inplace

test: build
	$(PY) -m pytest tests -q

bench: build
	$(PY) -m benchmarks.run

clean:
	rm -rf build fusedbn/*.so
