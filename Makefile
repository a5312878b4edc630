# The README's commands. Each installs what it needs into .venv first (Python 3 and a C compiler).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed-dev
BENCH_INSTALLED := $(VENV)/.installed-bench
SOURCES := pyproject.toml setup.py $(wildcard kernels/cy/*.pyx kernels/cy/*.pxd kernels/cy/*.pxi)

.PHONY: run test bench clean fashion-mnist
# A failed step leaves no file behind that make would take as done (a half-made .venv/bin/python).
.DELETE_ON_ERROR:

run: $(INSTALLED) fashion-mnist
	$(BIN)/fastdl reproduce

# Assignment 4's data: Debian's package where we may install it, else how to get it. A missing
# dataset never stops `make run`: `fastdl reproduce` then skips a4 and says so.
FASHION_DIR := /usr/share/datasets/fashion-mnist
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist
fashion-mnist:
	@if [ -d $(FASHION_DIR) ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "Installing Fashion-MNIST (Debian package dataset-fashion-mnist) for assignment 4"; \
		$(APT_INSTALL) || { apt-get update -q && $(APT_INSTALL); } \
			|| echo "Could not install dataset-fashion-mnist; a4 needs: $(BIN)/fastdl data download fashion-mnist"; \
	else \
		echo "Fashion-MNIST (assignment 4) is not in $(FASHION_DIR): run"; \
		echo "  sudo apt-get install dataset-fashion-mnist   or   $(BIN)/fastdl data download fashion-mnist"; \
	fi

test: $(INSTALLED)
	$(BIN)/python -m pytest

# fastdl's contenders, then PyTorch's and faiss' in a process of their own (in one process they
# would share one OpenMP runtime: benchmarks/README.md), then the ratio report of the two runs.
BENCH_ARGS := --benchmark-columns=min,median,mean,rounds --benchmark-sort=mean
bench: $(BENCH_INSTALLED)
	mkdir -p .benchmarks
	FASTDL_BENCH_PEERS=0 $(BIN)/python -m pytest benchmarks $(BENCH_ARGS) --benchmark-json=.benchmarks/fastdl.json
	$(BIN)/python -m pytest benchmarks -k "torch or faiss" $(BENCH_ARGS) --benchmark-json=.benchmarks/peers.json
	$(BIN)/python benchmarks/ratios.py .benchmarks/fastdl.json .benchmarks/peers.json

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(INSTALLED): $(BIN)/python $(SOURCES)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# torch==2.13.0 is PyTorch's CPU build where pip finds its CPU wheels (pyproject.toml's bench extra).
$(BENCH_INSTALLED): $(INSTALLED)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	touch $@

clean:
	rm -rf build dist *.egg-info kernels/cy/*.c kernels/cy/*.so results .pytest_cache .benchmarks
	rm -f $(INSTALLED) $(BENCH_INSTALLED)  # the extensions are gone: the next run installs again
