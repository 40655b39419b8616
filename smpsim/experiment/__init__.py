"""The experiment layer and the command line: scenario files, runs and sweeps of them, result
folders, tables, plots, the live view, the benchmark and the demo.

It drives the engine (smpsim.engine) through its public interface and runs the bundled
workloads (smpsim.workloads) or a user's own on the simulated CPUs.
"""
