"""smpsim: a multi-process SMP simulator of the HelenOS kernel slab allocator.

Each simulated CPU is an OS process; all share one shared-memory segment holding the simulated
physical memory, the frame table, every cache, slab and magazine, and the spinlocks. The public
interface (docs/api.md): Machine, Kernel (from Machine.cpu), SlabCache, Schedule (a controlled
run's decisions), the constants and errors. The package ships type hints (py.typed), so type
checkers read scripts against it.

    with smpsim.Machine(cpus=4, memory="64M") as m:
        k = m.cpu(0)
        c = k.slab_cache_create("node", 100)
        a = k.slab_alloc(c)
        k.slab_free(c, a)
        m.check()
"""

# The one place the version is written: setuptools reads it from here for the package's
# metadata (pyproject.toml, [tool.setuptools.dynamic]); `smpsim --version` prints it.
__version__: str = "0.1.0"

from .engine.errors import (BadArgument, CacheNotEmpty, CPUError, DebugError, InvalidCache, InvalidFree,
                     InvariantError, LockOrderError, LockTimeout, OutOfMemory, SmpsimError)
from .engine.frames import FRAME_ATOMIC, FRAME_NO_RECLAIM
from .engine.kernel import Kernel, SlabCache
from .engine.layout import PAGE_SIZE
from .engine.machine import Machine
from .engine.sched import Schedule
from .engine.slab import SLAB_CACHE_NOMAGAZINE, SLAB_CACHE_SLINSIDE, SLAB_RECLAIM_ALL, geometry

__all__ = ["Machine", "Kernel", "SlabCache", "Schedule", "geometry", "PAGE_SIZE", "FRAME_ATOMIC",
           "FRAME_NO_RECLAIM", "SLAB_CACHE_NOMAGAZINE", "SLAB_CACHE_SLINSIDE", "SLAB_RECLAIM_ALL",
           "SmpsimError", "BadArgument", "OutOfMemory", "InvalidFree", "InvalidCache",
           "CacheNotEmpty", "InvariantError", "CPUError", "LockTimeout", "LockOrderError",
           "DebugError"]
