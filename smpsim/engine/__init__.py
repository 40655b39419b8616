"""The simulated machine: shared memory, spinlocks, the frame allocator, the seed's slab
allocator, the per-CPU Kernel, CPUs as processes, the invariant checker and debugging mode.

The engine imports nothing of the experiment layer (smpsim.experiment) or of the bundled
workloads (smpsim.workloads); they use it. Its public surface is re-exported by `smpsim`.
"""
