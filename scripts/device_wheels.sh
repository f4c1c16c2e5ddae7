#!/usr/bin/env bash
# Downloads, on a machine with a package registry, the wheels that the device machine (an H200
# with 16 cores and no registry; see scripts/device_check.sh) lacks for issues 16 and 17:
# pydantic and its four dependencies (the machine's image has numpy, cupy-cuda13x, torch,
# typer, rich, pyyaml, threadpoolctl, pytest and hypothesis), and mpi4py + the mpich wheel
# (its own mpiexec; the image's mpi4py is not tied to an MPI we know). About 17 MB, into .whl/
# (ignored by git), for its Python (3.12 as last seen; DEVICE_PY=3.11 etc. for another).
#
#   bash scripts/device_wheels.sh        # or: make device-wheels
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEVICE_PY=${DEVICE_PY:-3.12}
DEST=${DEST:-.whl}
mkdir -p "$DEST"
# The versions this machine's venv resolves, so the device runs what CI tested.
specs=$("$PY" - <<'PYEOF'
from importlib.metadata import version, PackageNotFoundError
names = ["pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions", "mpi4py", "mpich"]
out = []
for n in names:
    try:
        out.append(f"{n}=={version(n)}")
    except PackageNotFoundError:
        out.append(n)  # not installed here: the newest wheel for the device's Python
print(" ".join(out))
PYEOF
)
# pip matches each manylinux tag exactly: name the ones these packages are built for.
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$DEVICE_PY" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 \
  -d "$DEST" $specs
ls -1 "$DEST"
du -sh "$DEST"
