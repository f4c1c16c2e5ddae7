#!/usr/bin/env bash
# One-shot data-parallel scaling run for the 16-core machine (issue 16): 1, 2, 4, 8 and 16 MPI
# ranks with one BLAS thread each, a compute-heavy MLP (784-1024-1024-10, 60,000 samples,
# float32, Adam) at global batch 4096; one warm-up and two measured epochs per rank count.
# Expected: ~2 minutes in all (1 rank ≈ 11 s an epoch at ~60 GFLOP/s). Goal: ≥ 70% efficiency
# at 8 ranks; the all-reduce share of a step is in the output.
#
# Needs, on that machine: python with numpy, pydantic, typer, rich, pyyaml, threadpoolctl and
# the mpi extra (pip install -e '.[mpi]': mpi4py + the mpich wheel's mpiexec). It has no network,
# so carry a prepared venv or install from a local wheelhouse first.
#   PYTHON=/path/to/venv/bin/python OUT=/tmp/out bash benchmarks/mpi_scaling_16core.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-benchmarks/results}
"$PYTHON" -c "import numpy, mpi4py, trainkit" || { echo "missing: pip install -e '.[mpi]'" >&2; exit 2; }
"$PYTHON" - <<'PY'
import os, sys
from trainkit.parallel.mpi import mpiexec
print("cores", os.cpu_count(), "python", sys.version.split()[0], "mpiexec", mpiexec())
PY
# RANKS/HIDDEN/EPOCHS only shrink it for a smoke test on a small machine.
"$PYTHON" -m benchmarks.mpi_scaling --ranks "${RANKS:-1,2,4,8,16}" --threads 1 --hidden "${HIDDEN:-1024,1024}" \
    --batch 4096 --epochs "${EPOCHS:-2}" --mpiexec-args "-bind-to core" --out "$OUT/mpi_scaling_16core.json"
