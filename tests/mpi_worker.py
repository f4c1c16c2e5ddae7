"""Run under mpiexec by tests/test_mpi*.py (not a test module itself).

    python tests/mpi_worker.py results OUT.json CONFIG...   train each config; rank 0 writes
                                                            params and history as JSON
    python tests/mpi_worker.py cli ARGS...                  `trainkit ARGS`, as the CLI runs

Fault injection for the fault tests, by environment: MPI_TEST_PIDS=DIR writes DIR/rank<r>.pid;
MPI_TEST_RAISE=R:E makes rank R raise in epoch E's first step. MPI_TEST_SPLIT_MACS=M sets
trainkit.nn.network.SPLIT_MACS (0: small conv nets train their batches as parts).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's trainkit


def _faults() -> None:
    from mpi4py import MPI

    rank = MPI.COMM_WORLD.Get_rank()
    if os.environ.get("MPI_TEST_SPLIT_MACS"):
        from trainkit.nn import network

        network.SPLIT_MACS = int(os.environ["MPI_TEST_SPLIT_MACS"])
    if os.environ.get("MPI_TEST_PIDS"):
        Path(os.environ["MPI_TEST_PIDS"], f"rank{rank}.pid").write_text(str(os.getpid()))
    if os.environ.get("MPI_TEST_RAISE"):
        who, epoch = map(int, os.environ["MPI_TEST_RAISE"].split(":"))
        if who == rank:
            from trainkit.runs import trainer

            real = trainer.Trainer._train_epoch

            def failing(self, *a, **k):
                if self.epoch + 1 == epoch:
                    raise RuntimeError(f"injected failure in epoch {epoch}")
                return real(self, *a, **k)

            trainer.Trainer._train_epoch = failing


def main() -> None:
    mode, args = sys.argv[1], sys.argv[2:]
    _faults()
    if mode == "cli":
        from trainkit.cli import main as cli_main

        sys.argv = ["trainkit", *args]
        cli_main()
        return
    from mpi4py import MPI

    from trainkit import api

    out = []
    for config in args[1:]:
        try:
            r = api.train(config)
        except BaseException:  # noqa: BLE001 - never leave the other ranks waiting
            import traceback

            traceback.print_exc()
            MPI.COMM_WORLD.Abort(1)
        out.append({"params": {k: v.tolist() for k, v in r.params.items()}, "history": r.history})
    if MPI.COMM_WORLD.Get_rank() == 0:
        Path(args[0]).write_text(json.dumps(out))


if __name__ == "__main__":
    main()
