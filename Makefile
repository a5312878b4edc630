# The README's commands. Each installs what it needs into .venv first (Python 3 and a C compiler).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed-dev
BENCH_INSTALLED := $(VENV)/.installed-bench
PYX := $(wildcard kernels/cy/*.pyx)
KERNEL_SOURCES := $(PYX) $(wildcard kernels/cy/*.pxd kernels/cy/*.pxi)
SOURCES := pyproject.toml setup.py $(KERNEL_SOURCES)

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

# The first time, pip installs fastdl (editable) and what it needs, compiling every extension; its
# box about editable installs (folders named like the package) does not concern this layout.
# CYTHON_FORCE_REGEN: cythonize compares only file times, so without it a changed setup.py
# (directives, the shared utility module) would not reach the .c files made before.
# pip compiles in a folder of its own, and installs .venv's Cython after: so that the next rebuild
# finds them up to date, the .c files are dated after that Cython's .pxd files (cythonize counts
# them as dependencies), and the extensions, dated after the .c files, are copied to EXT_BUILD.
EXT_BUILD := build/ext
INSTALL = CYTHON_FORCE_REGEN=1 PYTHONWARNINGS="ignore:Editable installation" \
	$(BIN)/python -m pip install --quiet -e ".[dev]" \
	&& touch kernels/cy/*.c && mkdir -p $(EXT_BUILD)/fastdl/kernels/cy && cp kernels/cy/*.so $(EXT_BUILD)/fastdl/kernels/cy/
# After that, when only kernel sources changed (an edit, a git pull), the extensions whose sources
# changed are rebuilt in place, by the dev extra's Cython and setuptools, all CPUs at once
# (setup.py): build_ext compiles an extension whose .c is newer than its copy in EXT_BUILD, then
# copies them all to kernels/cy/. pip would compile every one again, in a new folder.
REBUILD = $(BIN)/python setup.py -q build_ext --inplace --build-lib $(EXT_BUILD)
incremental = $(and $(wildcard $@),$(if $(filter-out $(KERNEL_SOURCES),$?),,yes))

# A failed build leaves the stamp as old as it was (.DELETE_ON_ERROR removes only a changed
# target), so the next run tries the same way again.
$(INSTALLED): $(BIN)/python $(SOURCES)
	@echo "$(if $(incremental),Recompiling the Cython extensions whose sources changed,Installing fastdl into $(VENV) and compiling its $(words $(PYX)) Cython extensions (a few minutes the first time)...)"
	$(if $(incremental),$(REBUILD),$(INSTALL))
	touch $@

# torch==2.13.0 is PyTorch's CPU build where pip finds its CPU wheels (pyproject.toml's bench extra).
# Not redone after each rebuild of the extensions: reinstalling compiles them all again.
$(BENCH_INSTALLED): pyproject.toml | $(INSTALLED)
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	touch $@

clean:
	rm -rf build dist *.egg-info kernels/cy/*.c kernels/cy/*.so results .pytest_cache .benchmarks
	rm -f $(INSTALLED) $(BENCH_INSTALLED)  # the extensions are gone: the next run installs again
