# smpsim: everything a fresh machine needs comes from here and pyproject.toml.
#
# PYTHON is the interpreter the virtual environment VENV is made with. The defaults (python3,
# .venv) serve the README's commands; another CPython gets its own environment, e.g.
#     make test PYTHON=python3.12 VENV=.venv-3.12
# (.ci/run does that for every CPython the project supports, see PYTHONS there).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow bench install check-install clean

# The virtual environment, with smpsim (and its C extensions) installed editable.
$(STAMP): pyproject.toml setup.py smpsim/engine/_atomics.c smpsim/engine/_fastpath.c \
          smpsim/engine/_sim.h smpsim/engine/_sched.h
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,cluster]'
	touch $(STAMP)

install: $(STAMP)

# A short demonstration on the default machine.
demo: $(STAMP)
	$(PY) -m smpsim demo

# The default suite (under 5 minutes on 2 cores).
test: $(STAMP)
	$(PY) -m pytest -q

# The long suites: fault-injection loops, full benchmarks.
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(VENV)/bin/smpsim bench

# smpsim as a user gets it: a wheel built from this tree, installed (not editable) into a fresh
# virtual environment, used from a folder outside the repository (.ci/check-install).
check-install:
	.ci/check-install $(PYTHON)

clean:
	rm -rf .venv .venv-* build *.egg-info smpsim/engine/*.so
