"""Builds smpsim's C extensions: `smpsim.engine._atomics` (atomics and spinlocks on shared
memory, see smpsim/engine/_atomics.c) and `smpsim.engine._fastpath` (the magazine hit path, see
smpsim/engine/_fastpath.c and its Python twin smpsim/engine/fastpath.py). Everything else is
declared in pyproject.toml."""
from setuptools import Extension, setup

FLAGS = ["-O2", "-std=c11", "-Wall"]

# Both include smpsim/engine/_sched.h and _sim.h (simulated time and the scheduler, shared).
DEPENDS = ["smpsim/engine/_sim.h", "smpsim/engine/_sched.h"]

setup(ext_modules=[Extension("smpsim.engine._atomics", ["smpsim/engine/_atomics.c"],
                             extra_compile_args=FLAGS, depends=DEPENDS),
                   Extension("smpsim.engine._fastpath", ["smpsim/engine/_fastpath.c"],
                             extra_compile_args=FLAGS, depends=DEPENDS)])
