# Two commands on a fresh machine: `make demo` and `make test` (`make check` is the fast loop).
# Each creates the virtual environment in .venv on first use and installs everything from the
# project's own files.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test check venv espeak tclsh lz4 clean

venv: $(STAMP)

# torch goes in first, pinned, so that the project's torch range is already satisfied and no
# multi-GB CUDA build is pulled in.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test,keras,brevitas]'
	touch $(STAMP)

# espeak-ng (a Debian package: nothing on PyPI speaks) synthesises the speech corpus.
espeak:
	@command -v espeak-ng >/dev/null || $(SUDO) apt-get install -y -q espeak-ng || \
	  ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q espeak-ng) || \
	  { echo "espeak-ng could not be installed: install the Debian package espeak-ng"; exit 1; }

# tclsh (the Debian package tcl: no Tcl interpreter installs from PyPI) runs the build
# script's check against the documented vendor IP (ese.boards.tcl_check).
tclsh:
	@command -v tclsh >/dev/null || $(SUDO) apt-get install -y -q tcl || \
	  ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q tcl) || \
	  { echo "tclsh could not be installed: install the Debian package tcl"; exit 1; }

# lz4's C headers (the Debian package liblz4-dev: no PyPI package ships them), which
# Verilator's FST waveform writer compiles against (simulate(waves=...), ese simulate --waves).
lz4:
	@[ -f /usr/include/lz4.h ] || $(SUDO) apt-get install -y -q liblz4-dev || \
	  ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q liblz4-dev) || \
	  { echo "liblz4-dev could not be installed: install the Debian package liblz4-dev"; exit 1; }

demo: espeak $(STAMP)
	$(BIN)/ese demo

# On every core: most of a test's time is one busy process (a simulation, a conversion, a
# training), so two workers on CI's two cores take 22 minutes (614 tests) where one took 35 for 501.
test: espeak tclsh lz4 $(STAMP)
	$(BIN)/python -m pytest -n auto --dist loadfile

# The fast loop: everything but Verilator and the slow tests, in under a minute (40 s on two
# cores, its files shared between them as in make test).
check: espeak tclsh $(STAMP)
	$(BIN)/python -m pytest -m "not rtl and not slow" -n auto --dist loadfile

clean:
	rm -rf $(VENV) build .pytest_cache
