"""Data-parallel training over MPI (trainkit.parallel.mpi): one model, N processes, the same
answer as one process. `mpiexec -n N trainkit train CONFIG`, or `trainkit train --workers N`.

Only `launched()` lives here: every CLI call asks it, and it must not import numpy or mpi4py
(`trainkit --help` stays fast); the rest loads from trainkit.parallel.mpi on first use."""

import os

LAUNCHER_ENV = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")  # MPICH/Intel MPI, Open MPI, PMIx

__all__ = ["INSTALL", "DataParallel", "launched", "world"]


def launched() -> bool:
    """True when an MPI launcher (mpiexec, srun with PMI) started this process."""
    return any(v in os.environ for v in LAUNCHER_ENV)


def __getattr__(name: str):
    if name in ("INSTALL", "DataParallel", "world"):
        from trainkit.parallel import mpi

        return getattr(mpi, name)
    raise AttributeError(f"module 'trainkit.parallel' has no attribute {name!r}")
