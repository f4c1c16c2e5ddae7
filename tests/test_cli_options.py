"""The command line's own options, its help, and the setup the README and Makefile promise."""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess

import pytest
import typer
from conftest import CONFIGS, ROOT

import trainkit
from trainkit.cli import app

COMMANDS = sorted(typer.main.get_command(app).commands)


def test_version_is_the_package_version(cli):
    r = cli("--version")
    assert r.code == 0 and r.stdout == f"trainkit {trainkit.__version__}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", trainkit.__version__)
    try:
        installed = importlib.metadata.version("trainkit")
    except importlib.metadata.PackageNotFoundError:
        installed = None  # run from a checkout without `pip install -e .`; make test installs it
    assert installed in (None, trainkit.__version__)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_shows_flags_without_a_type(cli, command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    r = cli(*([command] if command else []), "--help")
    assert r.code == 0 and "--help" in r.stdout
    assert "<bool>" not in r.stdout, r.stdout
    if command == "train":  # a flag is listed with its help text right after its name
        assert re.search(r"--overwrite\s+(│\s+)?Replace an existing run directory", r.stdout), r.stdout


def test_short_options_have_one_meaning():
    """-o is --optimizer and -d is --output-dir in every command that has them."""
    meanings: dict[str, set[str]] = {}
    for command in typer.main.get_command(app).commands.values():
        for param in command.params:
            for short in (o for o in param.opts if re.fullmatch(r"-\w", o)):
                meanings.setdefault(short, set()).update(o for o in param.opts if o.startswith("--"))
    assert meanings["-o"] == {"--optimizer"} and meanings["-d"] == {"--output-dir"}
    assert all(len(longs) == 1 for longs in meanings.values()), meanings


def test_train_output_dir_is_d_and_output_dir(cli, tmp_path):
    args = ("train", CONFIGS / "linreg.yaml", "--set", "train.epochs=2", "--progress", "none")
    assert cli(*args, "-d", tmp_path / "a").code == 0
    assert cli(*args, "--output-dir", tmp_path / "b").code == 0
    assert (tmp_path / "a" / "summary.json").is_file() and (tmp_path / "b" / "summary.json").is_file()
    r = cli(*args, "-o", tmp_path / "c")
    assert r.code == 2 and "-o" in r.stderr and not (tmp_path / "c").exists()


# ------------------------------------------------------------------ README, Makefile, CI

README = (ROOT / "README.md").read_text()


def _dry_run(target: str) -> str:
    """The commands `make TARGET` would run in a fresh clone (-B: as if nothing was built yet)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    return subprocess.run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def test_ci_runs_test_all_with_the_oracles_required():
    assert re.search(r"^make test-all$", (ROOT / ".ci" / "run").read_text(), re.M)
    commands = _dry_run("test-all")
    install = re.search(r"pip install -q -e '\.\[([\w,]+)\]'", commands)
    assert install and {"test", "oracle", "plot"} <= set(install.group(1).split(","))
    assert re.search(r"^TRAINKIT_TEST_ALL=1 \S+ -m pytest", commands, re.M)
    assert "oracle" not in _dry_run("test") and "TRAINKIT_TEST_ALL" not in _dry_run("test")


def test_readme_names_make_targets_that_exist():
    named = set(re.findall(r"\bmake ([a-z][\w-]*)", README))
    assert {"run", "test", "test-all"} <= named
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    assert named <= targets, named - targets


def test_readme_says_how_to_get_the_command_and_the_extras():
    assert "source .venv/bin/activate" in README and "make run CONFIG=" in README
    pyproject = (ROOT / "pyproject.toml").read_text()
    section = pyproject.split("[project.optional-dependencies]")[1].split("\n[")[0]
    extras = set(re.findall(r"^(\w+) = \[", section, re.M))
    named = set()
    for group in re.findall(r"pip install (?:-e )?'(?:\.|trainkit)\[([\w,]+)\]'", README):
        named |= set(group.split(","))
    assert "plot" in named and "oracle" in named and named <= extras, (named, extras)
    assert "pip install -e '.[plot]'" in README


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--json"], "Missing argument"),
        (["train", str(CONFIGS / "linreg.yaml"), "--json", "--bogus"], "--bogus"),
        (["train", str(CONFIGS / "linreg.yaml"), "--json", "--progress", "wat"], "--progress"),
        (["resume", "--json"], "Missing argument"),
        (["evaluate", "--json"], "Missing argument"),
        (["validate", "--json", "--seed", "x"], "--seed"),
        (["lr-find", "--json"], "Missing argument"),
    ],
)
def test_usage_errors_of_every_json_command_are_one_json_document(cli, args, message):
    r = cli(*args)
    assert r.code == 2
    doc = r.json  # the whole of stdout is one document, not click's usage text on stderr only
    assert doc["status"] == "error" and doc["error"]["type"] == "usage" and message in doc["error"]["message"]


@pytest.mark.parametrize("emitted", [False, True])
def test_ctrl_c_outside_training_under_json_still_gives_one_document(monkeypatch, capfd, emitted):
    """Ctrl-C while loading, compressing or rendering exits 130 at once; under --json stdout
    still holds exactly one JSON document (none was there before: scripts read an empty stdout)."""
    import sys

    from trainkit import cli

    monkeypatch.setattr(sys, "argv", ["trainkit", "compress", "run", "--json"])
    monkeypatch.setattr(cli, "_emitted", emitted)
    monkeypatch.setattr(cli.os, "_exit", lambda code: (_ for _ in ()).throw(SystemExit(code)))
    with pytest.raises(SystemExit) as e:
        cli._interrupted(2, None)
    assert e.value.code == 130
    out = capfd.readouterr().out
    if emitted:
        assert out == ""
    else:
        assert json.loads(out) == {
            "status": "interrupted",
            "error": {"type": "interrupted", "message": "stopped by SIGINT"},
        }
