"""Data-parallel training over MPI (trainkit.parallel.mpi): one model, N processes, the same
answer as one process. `mpiexec -n N trainkit train CONFIG`, or `trainkit train --workers N`."""

from trainkit.parallel.mpi import INSTALL, DataParallel, launched, world

__all__ = ["INSTALL", "DataParallel", "launched", "world"]
