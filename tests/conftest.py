"""Shared helpers: run the CLI in-process or as a real subprocess, write configs."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trainkit.cli import app

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"


def require(module: str):
    """Import an optional test dependency (torch for the oracles). `make test` skips the tests
    that need a missing one; `make test-all` sets TRAINKIT_TEST_ALL=1, installs the extras and
    fails instead, so CI can never pass by skipping an oracle."""
    if os.environ.get("TRAINKIT_TEST_ALL") == "1":
        return importlib.import_module(module)
    return pytest.importorskip(module)


class Result:
    def __init__(self, code, stdout, stderr):
        self.code, self.stdout, self.stderr = code, stdout, stderr

    @property
    def json(self):
        return json.loads(self.stdout)


@pytest.fixture
def cli():
    """Run `trainkit ARGS...` in-process; returns exit code, stdout and stderr separately."""

    def run(*args) -> Result:
        runner = CliRunner()
        r = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        return Result(r.exit_code, r.stdout, r.stderr)

    return run


def run_process(*args, env=None, cwd=None, timeout=120) -> Result:
    """Run `python -m trainkit ARGS...` as a separate process."""
    e = dict(os.environ, **(env or {}))
    p = subprocess.run(
        [sys.executable, "-m", "trainkit", *map(str, args)],
        capture_output=True,
        text=True,
        env=e,
        cwd=cwd or ROOT,
        timeout=timeout,
    )
    return Result(p.returncode, p.stdout, p.stderr)


@pytest.fixture
def write_config(tmp_path):
    """Write a config (dedented YAML) into tmp_path and return its path."""

    def write(text: str, name: str = "config.yaml") -> Path:
        p = tmp_path / name
        p.write_text(textwrap.dedent(text).lstrip("\n"))
        return p

    return write


LINREG_SMALL = """
seed: 0
data: {name: linear, n_samples: 50, val_fraction: 0.2}
model: {name: linear}
optimizer: {name: gd, lr: 0.5}
train: {epochs: 20, dtype: float64}
"""
