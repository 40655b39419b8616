"""The experiment layer and the command line: scenario files, runs and sweeps of them, result
folders, tables, plots, the live view, the benchmark and the demo.

It drives the engine (smpsim.engine) through its public interface and runs the bundled
workloads (smpsim.workloads) or a user's own on the simulated CPUs.

`sweep_on_cluster(scenario, client_or_address, out)` sweeps a scenario on a Dask cluster
(smpsim.experiment.cluster, the optional extra smpsim[cluster]); it is looked up when first used,
so importing this package imports neither the cluster module nor Dask.
"""

import typing

if typing.TYPE_CHECKING:        # what type checkers see of the name looked up below
    from smpsim.experiment.cluster import sweep_on_cluster

__all__ = ["sweep_on_cluster"]


def __getattr__(name: str) -> typing.Any:
    if name == "sweep_on_cluster":
        from smpsim.experiment.cluster import sweep_on_cluster
        return sweep_on_cluster
    raise AttributeError(f"module 'smpsim.experiment' has no attribute {name!r}")
