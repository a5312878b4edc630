# The README's commands. Each installs what it needs into .venv first (Python 3 and a C compiler).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed-dev
BENCH_INSTALLED := $(VENV)/.installed-bench
SOURCES := pyproject.toml setup.py $(wildcard kernels/cy/*.pyx kernels/cy/*.pxd)

.PHONY: run test bench clean

run: $(INSTALLED)
	$(BIN)/fastdl reproduce

test: $(INSTALLED)
	$(BIN)/python -m pytest

bench: $(BENCH_INSTALLED)
	$(BIN)/python -m pytest benchmarks --benchmark-columns=min,median,mean,rounds --benchmark-sort=mean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(INSTALLED): $(BIN)/python $(SOURCES)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# torch==2.13.0 is a CPU build; any other spelling downloads a multi-GB CUDA build.
$(BENCH_INSTALLED): $(INSTALLED)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	touch $@

clean:
	rm -rf build dist *.egg-info kernels/cy/*.c kernels/cy/*.so results .pytest_cache .benchmarks
