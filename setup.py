"""Builds smpsim's C extensions: `smpsim._atomics` (atomics and spinlocks on shared memory, see
smpsim/_atomics.c) and `smpsim._fastpath` (the magazine hit path, see smpsim/_fastpath.c and its
Python twin smpsim/fastpath.py). Everything else is declared in pyproject.toml."""
from setuptools import Extension, setup

FLAGS = ["-O2", "-std=c11", "-Wall"]

setup(ext_modules=[Extension("smpsim._atomics", ["smpsim/_atomics.c"], extra_compile_args=FLAGS),
                   Extension("smpsim._fastpath", ["smpsim/_fastpath.c"],
                             extra_compile_args=FLAGS)])
