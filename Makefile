# smpsim: everything a fresh machine needs comes from here and pyproject.toml.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow bench install clean

# The virtual environment, with smpsim (and its C extension) installed editable.
$(STAMP): pyproject.toml setup.py smpsim/engine/_atomics.c smpsim/engine/_fastpath.c
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

clean:
	rm -rf $(VENV) build *.egg-info smpsim/engine/*.so
