"""The bad-input corpus (tests/bad_inputs/): every case exits 2 with a clear message."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

CORPUS = Path(__file__).parent / "bad_inputs"
CASES = sorted(CORPUS.glob("*.yaml"))


def expectation(case: Path) -> tuple[list[str], str]:
    """(the command and its arguments after the case's path, the regex stderr must match)."""
    sidecar = case.with_name(case.name + ".expect")
    text = sidecar.read_text() if sidecar.exists() else case.read_text(encoding="utf-8")
    args, expect, command = [], None, "train"
    for line in text.splitlines():
        if line.startswith("# command:"):
            command = line[len("# command:") :].strip()
        elif line.startswith("# args:"):
            args = shlex.split(line[len("# args:") :])
        elif line.startswith("# expect:"):
            expect = line[len("# expect:") :].strip()
    assert expect, f"{case.name} states no expectation"
    return [command, *args], expect


def test_every_corpus_file_is_used():
    """A case saved as .yml, a sidecar without its case or a data file no case names would be
    skipped without a word: every file here is a case, a case's sidecar, or data a case uses."""
    cases = {p.name for p in CASES}
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in CORPUS.iterdir() if p.is_file()]
    for p in CORPUS.iterdir():
        if p.is_dir():
            assert p.name == "data", f"{p}: cases live in {CORPUS.name}/ itself, data in data/"
            unused = [d.name for d in p.iterdir() if not any(f"data/{d.name}" in t for t in texts)]
            assert not unused, f"data files no case uses: {unused}"
        elif p.name.endswith(".expect"):
            assert p.name.removesuffix(".expect") in cases, f"{p.name} has no case"
        else:
            assert p.name in cases or p.name == "README.md", f"{p.name} is not a case (cases end in .yaml)"


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_bad_input_exits_2_with_a_clear_message(cli, case):
    args, expect = expectation(case)
    r = cli(args[0], case, *args[1:])
    assert r.code == 2, (r.code, r.stdout, r.stderr)
    assert r.stdout == ""
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ")
    assert re.search(expect, r.stderr), f"expected /{expect}/ in:\n{r.stderr}"
    named = (case.name, "data/", "--set", *args[1:2])  # the file, the data file or the option
    assert any(n in r.stderr for n in named), r.stderr


@pytest.mark.parametrize("case", CASES[::4], ids=lambda p: p.stem)
def test_bad_input_with_json_is_one_error_document(cli, case):
    args, _ = expectation(case)
    r = cli(args[0], case, *args[1:], "--json")
    assert r.code == 2
    doc = json.loads(r.stdout)
    assert doc["status"] == "error" and doc["error"]["message"]
    assert r.stderr == ""


CONFIG_CASES = [c for c in CASES if expectation(c)[0][0] in ("train", "sweep")]  # validate reads configs, not runs


@pytest.mark.parametrize("case", CONFIG_CASES[1::6], ids=lambda p: p.stem)
def test_validate_agrees_with_train(cli, case):
    args, expect = expectation(case)
    r = cli("validate", case, *args[1:])
    assert r.code == 2 and re.search(expect, r.stderr)
