#!/usr/bin/env bash
# Issue 17's GPU checks in one go, on a machine with an NVIDIA GPU, CuPy and torch with CUDA:
#   1. pytest -m gpu (tests/test_gpu.py: every optimizer GPU vs CPU, the fused kernels, a GPU
#      checkpoint resumed on the CPU) plus the CPU-side device tests;
#   2. python -m benchmarks.gpu --quick (MLP vs torch fused Adam and CUDA graph, wide MLP vs
#      the CPU engine, LeNet vs torch, numerics of every optimizer) -> benchmarks/results/gpu.json.
# Budget: about 8 minutes in all (pytest ≤ 200 s, benchmarks ≤ 300 s, each under `timeout`).
#
# The GPU machine has no package registry. What trainkit needs and it lacks (pydantic and its
# dependencies; pytest and hypothesis where missing) comes from wheels carried in the working
# tree: `make device-wheels` (scripts/device_wheels.sh) puts them in .whl/ here; carry that
# folder (the device tool's `carry: [".whl"]`) or name another with TRAINKIT_WHEELS.
# scripts/device_check.sh runs this script and the MPI scaling in one go.
#
#   bash scripts/gpu_check.sh            # from the repository root; results also under $OUT if set
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${TRAINKIT_WHEELS:-.whl}
status=0

echo "== python: $($PY -V 2>&1); $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
missing=$($PY - <<'PYEOF'
import importlib.util
need = {"pydantic": "pydantic>=2.5", "typer": "typer>=0.12", "rich": "rich>=13", "yaml": "pyyaml>=6",
        "threadpoolctl": "threadpoolctl>=3", "pytest": "pytest>=8", "hypothesis": "hypothesis>=6"}
print(" ".join(f"'{spec}'" for mod, spec in need.items() if importlib.util.find_spec(mod) is None))
PYEOF
)
if [ -n "$missing" ]; then
  echo "== installing from $WHEELS: $missing"
  eval "$PY -m pip install -q --no-index --find-links '$WHEELS' $missing" || {
    echo "error: could not install $missing from $WHEELS (see the header of this script)" >&2; exit 3; }
fi
$PY -c "import cupy, torch; n = cupy.cuda.runtime.getDeviceCount(); assert n and torch.cuda.is_available(); print('== cupy', cupy.__version__, 'torch', torch.__version__, 'GPUs', n)" || {
  echo "error: needs CuPy seeing a GPU and torch with CUDA" >&2; exit 3; }
$PY -m trainkit list devices

echo "== pytest -m gpu (and the CPU-side device tests)"
timeout "${GPU_PYTEST_TIMEOUT:-200}" $PY -m pytest -m "gpu or not gpu" tests/test_gpu.py tests/test_device.py tests/test_cuda_kernels.py \
  -q -p no:cacheprovider -rs || status=1

echo "== benchmarks (python -m benchmarks.gpu --quick)"
timeout "${GPU_BENCH_TIMEOUT:-300}" $PY -m benchmarks.gpu --quick || status=1

if [ -n "${OUT:-}" ] && [ -f benchmarks/results/gpu.json ]; then cp benchmarks/results/gpu.json "$OUT"/; fi
exit $status
