"""Builds smpsim's one C extension, `smpsim._atomics` (see smpsim/_atomics.c).
Everything else is declared in pyproject.toml."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("smpsim._atomics", ["smpsim/_atomics.c"],
                             extra_compile_args=["-O2", "-std=c11", "-Wall"])])
