#!/usr/bin/env bash
# Everything issues 16 and 17 send to the device machine, as ONE run of under 9 minutes:
#   1. the carried wheels (scripts/device_wheels.sh) installed under /tmp/tkp (--prefix: the
#      image's python3 is itself a venv, so a venv on top would not see its numpy, CuPy, torch),
#      used through PYTHONPATH, with the mpich wheel's libmpi and mpiexec named explicitly;
#   2. scripts/gpu_check.sh: pytest -m gpu + the device tests (≤ 150 s), benchmarks.gpu --quick (≤ 200 s);
#   3. benchmarks/mpi_scaling_16core.sh: 1, 2, 4, 8, 16 ranks (≤ 150 s).
# Results (gpu.json, mpi_scaling_16core.json, the whole log) land in $OUT.
#
# Here:      bash scripts/device_wheels.sh
# There:     the device tool's run, carry [".whl"], timeout_s 570:
#            bash scripts/device_check.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
exec > >(tee "$OUT/device_check.log") 2>&1
export PYTHONUNBUFFERED=1
status=0
PY=${PYTHON:-python3}
P=/tmp/tkp
echo "== $(date -u +%FT%TZ) $($PY -V 2>&1), $(nproc) cores, $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
$PY -m pip install -q --no-index --no-deps --no-compile --prefix "$P" .whl/*.whl || {
  echo "error: installing the carried wheels failed (run scripts/device_wheels.sh here first)" >&2; exit 3; }
site=$($PY -c "import sys; print(f'$P/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages')")
# trainkit from the tree itself (no build step); the carried packages before the image's own.
export PYTHONPATH=$PWD:$site${PYTHONPATH:+:$PYTHONPATH}
export MPI4PY_LIBMPI=$P/lib/libmpi.so.12 TRAINKIT_MPIEXEC=$P/bin/mpiexec PATH=$P/bin:$PATH
$PY -c "import pydantic, mpi4py, numpy, trainkit; from mpi4py import MPI; print('== pydantic', pydantic.VERSION, 'numpy', numpy.__version__, 'mpi4py', mpi4py.__version__, MPI.Get_library_version().split(chr(10))[0])" || exit 3

echo "== GPU (issue 17)"
GPU_PYTEST_TIMEOUT=150 GPU_BENCH_TIMEOUT=200 PYTHON="$PY" TRAINKIT_WHEELS=.whl OUT="$OUT" \
  bash scripts/gpu_check.sh || status=1

echo "== MPI scaling (issue 16)"
PYTHON="$PY" OUT="$OUT" timeout "${MPI_TIMEOUT:-150}" bash benchmarks/mpi_scaling_16core.sh || status=1
echo "== done, status $status"
exit $status
