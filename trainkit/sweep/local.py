"""The local executor: trials in worker processes with one BLAS thread each (--jobs N), or
in this process when N is 1 (backend/pool.py, shared with compare-optimizers --jobs)."""

from trainkit.backend.pool import executor

__all__ = ["executor"]
