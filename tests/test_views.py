"""Looking at runs: `trainkit runs`, `plot`, `diff` and `export --format tensorboard`, on real
run dirs trained by this suite (completed, early-stopped, diverged, interrupted, killed,
running, a comparison) and on damaged ones."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import LINREG_SMALL, ROOT, require, run_process

from trainkit import api
from trainkit.compare import runner as compare
from trainkit.config import load_config_text
from trainkit.runs import rundir, views
from trainkit.runs.rundir import RunDir

EARLY = LINREG_SMALL.replace(
    "train: {epochs: 20, dtype: float64}",
    "train: {epochs: 200, dtype: float64, early_stopping: {monitor: val_loss, patience: 2, min_delta: 1.0e-3}}",
)


def _train(path, text, overrides=(), stop_after_epoch=None):
    """Train `text` (a config) into the run dir `path`; stop as SIGINT would after an epoch."""
    loaded = load_config_text(text, "config.yaml", list(overrides), base_dir=path.parent)
    run = RunDir(path)
    seen = {}

    def on_epoch(row):
        if row["epoch"] == stop_after_epoch:
            seen["trainer"].stop_requested = "SIGINT"

    try:
        return api.train(loaded, on_epoch=on_epoch, on_start=lambda exp: seen.update(trainer=exp.trainer), run_dir=run)
    finally:
        run.close()


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """A folder of real runs, one of each ending, plus a compare-optimizers output dir."""
    root = tmp_path_factory.mktemp("views") / "runs"
    root.mkdir()
    assert _train(root / "done", LINREG_SMALL).status == "completed"
    assert _train(root / "early", EARLY).status == "early_stopped"
    assert _train(root / "diverged", LINREG_SMALL, ["optimizer.lr=50", "train.epochs=400"]).status == "diverged"
    assert _train(root / "stopped", LINREG_SMALL, stop_after_epoch=5).status == "interrupted"
    # killed (SIGKILL: no summary.json is ever written): the same files an interrupted run leaves, less the summary
    _train(root / "killed", LINREG_SMALL, stop_after_epoch=7)
    (root / "killed" / "summary.json").unlink()
    # running: another trainkit process holds its lock (RunDir's flock; a second open file here)
    _train(root / "live", LINREG_SMALL, stop_after_epoch=3)
    (root / "live" / "summary.json").unlink()
    (root / "config.yaml").write_text(LINREG_SMALL)
    compare.compare(root / "config.yaml", ["gd", "adam lr=0.05"], jobs=1, output_dir=root / "cmp")
    (root / "config.yaml").unlink()
    return root


@pytest.fixture
def live_lock(runs_dir):
    run = RunDir(runs_dir / "live", resume=True)  # takes the lock, as a resumed run does
    yield
    run.close()


def jsonl(path):
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


def runs_json(cli, *args):
    r = cli("runs", *args, "--json")
    assert r.code == 0, r.stderr
    return {row["name"]: row for row in r.json["runs"]}


def test_file_names_are_those_rundir_writes():
    assert {views.SUMMARY, views.METRICS, views.CONFIG} <= set(rundir.FILES) and views.LOCK == rundir.LOCK


def test_runs_shows_how_each_run_ended(cli, runs_dir, live_lock):
    rows = runs_json(cli, runs_dir)
    assert {n: r["status"] for n, r in rows.items()} == {
        "cmp/adam-lr0.05-seed0": "completed",
        "cmp/gd-lr0.5-seed0": "completed",
        "done": "completed",
        "early": "early_stopped",
        "diverged": "diverged",
        "stopped": "interrupted",
        "killed": "interrupted",
        "live": "running",
    }
    assert "SIGINT" in rows["stopped"]["note"] and "killed" in rows["killed"]["note"]
    assert rows["done"]["model"] == "linear" and rows["cmp/adam-lr0.05-seed0"]["optimizer"] == "adam"
    assert rows["stopped"]["epochs"] == 5 and rows["killed"]["epochs"] == 7 and rows["live"]["epochs"] == 3


def test_runs_best_and_final_are_those_of_metrics_jsonl(cli, runs_dir):
    rows = runs_json(cli, runs_dir, "--metric", "val_r2")
    for name, row in rows.items():
        history = jsonl(runs_dir / name)
        values = [h["val_r2"] for h in history if h["val_r2"] is not None and math.isfinite(h["val_r2"])]
        assert row["epochs"] == len(history), name
        assert row["best"] == (max(values) if values else None), name  # r2: higher is better
        assert row["final"] == history[-1]["val_r2"], name
        summary = runs_dir / name / "summary.json"
        if summary.exists():
            assert row["wall_s"] == json.loads(summary.read_text())["timing"]["wall_s"]
    lowest = runs_json(cli, runs_dir)  # default: val_loss, lower is better
    assert lowest["done"]["best"] == min(h["val_loss"] for h in jsonl(runs_dir / "done"))
    # the loss blew up: the last recorded epoch's value (null where it was not finite)
    assert lowest["diverged"]["final"] == jsonl(runs_dir / "diverged")[-1]["val_loss"]
    assert lowest["diverged"]["status"] == "diverged"


def test_runs_sort_and_filter(cli, runs_dir):
    r = cli("runs", runs_dir, "--filter", "status=interrupted,diverged", "--filter", "model=linear", "--json")
    assert sorted(row["name"] for row in r.json["runs"]) == [
        "diverged",
        "killed",
        "live",
        "stopped",
    ]  # live: its lock is free here
    r = cli("runs", runs_dir, "--filter", "name=cmp/*", "--json")
    assert [row["name"] for row in r.json["runs"]] == ["cmp/adam-lr0.05-seed0", "cmp/gd-lr0.5-seed0"]
    r = cli("runs", runs_dir, "--sort", "-best", "--json")
    best = [row["best"] for row in r.json["runs"]]
    finite = [b for b in best if b is not None]
    assert finite == sorted(finite, reverse=True) and best[: len(finite)] == finite  # missing values last
    r = cli("runs", runs_dir, "--sort", "epochs", "--json")
    assert [row["epochs"] for row in r.json["runs"]] == sorted(row["epochs"] for row in r.json["runs"])


def test_runs_piped_is_plain_text_one_line_per_run(runs_dir):
    r = run_process("runs", runs_dir, "--filter", "status=completed")
    assert r.code == 0 and "\x1b[" not in r.stdout
    lines = [line for line in r.stdout.splitlines() if "completed" in line]
    assert len(lines) == 3 and any(line.split()[0] == "done" for line in lines)


def test_runs_default_dir_and_an_empty_one(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = cli("runs")
    assert r.code == 2 and "runs: no such directory" in r.stderr
    (tmp_path / "runs").mkdir()
    r = cli("runs", "--json")
    assert r.code == 0 and r.json["runs"] == []


def test_damaged_run_files_do_not_break_runs(cli, runs_dir, tmp_path):
    root = tmp_path / "mixed"
    for name, damage in [
        (
            "half_summary",
            lambda p: p.joinpath("summary.json").write_bytes(p.joinpath("summary.json").read_bytes()[:300]),
        ),
        ("garbage_summary", lambda p: p.joinpath("summary.json").write_text("not json at all")),
        ("empty_summary", lambda p: p.joinpath("summary.json").write_text("")),
        ("garbage_metrics", lambda p: p.joinpath("metrics.jsonl").write_text('{"epoch": 1, "val_loss": 1.0}\nxx\n')),
        ("half_metrics", lambda p: p.joinpath("metrics.jsonl").write_text('{"epoch": 1, "val_loss": 1.0}\n{"epo')),
    ]:
        shutil.copytree(runs_dir / "done", root / name)
        damage(root / name)
        (root / name / "summary.json").touch()  # newer than the metrics, as a finished run's is
    shutil.copytree(runs_dir / "done", root / "fine")
    rows = runs_json(cli, root)
    assert rows.pop("fine")["status"] == "completed"
    assert {n: r["status"] for n, r in rows.items()} == dict.fromkeys(rows, "damaged")
    assert all(r["note"] for r in rows.values())
    r = cli("runs", root)
    assert r.code == 0 and "damaged: half_summary: summary.json is incomplete" in r.stdout


BAD = [
    (("runs", "{tmp}/nowhere"), r"nowhere: no such directory"),
    (("runs", "{tmp}/file.txt"), r"not a directory"),
    (("runs", "{runs}", "--metric", "val_los"), r"no run here records it\n.*did you mean 'val_loss'"),
    (("runs", "{runs}", "--filter", "status"), r"must be KEY=VALUE"),
    (("runs", "{runs}", "--filter", "stauts=diverged"), r"unknown key 'stauts'\n.*did you mean 'status'"),
    (("runs", "{runs}", "--filter", "status=diverge"), r"unknown status 'diverge'\n.*did you mean 'diverged'"),
    (("runs", "{runs}", "--sort", "bestt"), r"--sort 'bestt': unknown key\n.*did you mean 'best'"),
    (("plot", "{tmp}/empty"), r"not a run directory"),
    (("plot", "{runs}/done", "--metric", "train_los"), r"did you mean 'train_loss'"),
    (("plot", "{runs}/done", "--output", "{tmp}/file.txt"), r"unknown image type '.txt'"),
    (("plot", "{runs}/done", "--output", "{tmp}/exists.png"), r"already exists\n.*--overwrite"),
    (("plot", "{runs}/done", "--output", "{tmp}/no/such/dir/p.png"), r"does not exist"),
    (("diff", "{runs}/done", "{tmp}/nowhere"), r"nowhere: no such run directory"),
    (("diff", "{runs}/done", "{tmp}/empty"), r"no config.yaml"),
    (("export", "{tmp}/empty", "--format", "tensorboard"), r"not a run directory"),
]


@pytest.mark.parametrize("args, expect", BAD, ids=lambda v: " ".join(v)[:40] if isinstance(v, tuple) else None)
def test_bad_input_exits_2_with_a_clear_message(cli, runs_dir, tmp_path, args, expect):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "exists.png").write_bytes(b"mine")
    args = [a.format(tmp=tmp_path, runs=runs_dir) for a in args]
    r = cli(*args)
    assert r.code == 2 and r.stdout == "" and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    assert re.search(expect, r.stderr), r.stderr
    r = cli(*args, "--json")
    assert r.code == 2 and r.stderr == "" and re.search(expect, json.loads(r.stdout)["error"]["message"])
    assert (tmp_path / "exists.png").read_bytes() == b"mine"


def test_plot_labels_runs_by_their_config_diff(cli, runs_dir):
    curves, metrics = views.curves([runs_dir / "cmp"], None)
    assert metrics == ["val_loss"]
    # lr and the batch size (gd takes the full batch) differ too; the optimizer alone tells them apart
    assert [c["label"] for c in curves] == ["optimizer=adam", "optimizer=gd"]
    assert curves[0]["rows"] == jsonl(runs_dir / "cmp" / "adam-lr0.05-seed0")
    r = cli("plot", runs_dir / "cmp", "--metric", "train_loss,val_loss")
    assert r.code == 0 and "optimizer=gd " in r.stdout and "seed0" not in r.stdout
    assert r.stdout.count("train_loss") == 2 and re.search("[▁▂▃▄▅▆▇█]{10}", r.stdout)
    # runs of the same config are told apart by name; of the keys that differ, those that tell
    # the runs apart (lr and early stopping differ too, but the epochs alone split all three)
    assert views.labels([("a", runs_dir / "done"), ("b", runs_dir / "done")]) == ["a", "b"]
    three = [(n, runs_dir / n) for n in ("done", "diverged", "early")]
    assert views.labels(three) == ["train.epochs=20", "train.epochs=400", "train.epochs=200"]


def test_plot_json_is_one_document_of_the_curves(cli, runs_dir, tmp_path):
    r = cli("plot", runs_dir / "cmp", "--metric", "train_loss,val_loss", "--json")
    doc = json.loads(r.stdout)
    assert r.code == 0 and doc["status"] == "ok" and doc["output"] is None
    rows = jsonl(runs_dir / "cmp" / "adam-lr0.05-seed0")
    run = doc["runs"][0]
    assert run["label"] == "optimizer=adam" and run["epoch"] == [row["epoch"] for row in rows]
    assert run["val_loss"] == [row["val_loss"] for row in rows]


def test_plot_writes_an_image_and_refuses_to_overwrite_it(cli, runs_dir, tmp_path):
    require("matplotlib")
    out = tmp_path / "curves.png"
    r = cli("plot", runs_dir / "cmp", runs_dir / "diverged", "--output", out)
    assert r.code == 0 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = cli("plot", runs_dir / "done", "--output", out)
    assert r.code == 2 and "already exists" in r.stderr
    before = out.stat().st_size
    assert cli("plot", runs_dir / "done", "--output", out, "--overwrite").code == 0
    assert out.stat().st_size != before


def test_plot_without_matplotlib_says_how_to_get_it(cli, runs_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as when not installed
    r = cli("plot", runs_dir / "done", "--output", tmp_path / "p.png")
    assert r.code == 2 and "matplotlib" in r.stderr and "pip install" in r.stderr


def test_log_scale_only_where_values_span_decades():
    assert views_report().spans_decades([10.0, 1.0, 0.05])
    assert not views_report().spans_decades([0.9, 0.5, 0.2])
    assert not views_report().spans_decades([10.0, -1.0, 0.01])  # not all positive
    assert not views_report().spans_decades([None, math.nan])


def views_report():
    from trainkit.report import views as report

    return report


def test_diff_shows_config_keys_that_differ_then_final_metrics(cli, runs_dir):
    a, b = runs_dir / "cmp" / "adam-lr0.05-seed0", runs_dir / "cmp" / "gd-lr0.5-seed0"
    r = cli("diff", a, b, "--json")
    assert r.code == 0
    doc = r.json
    assert doc["status"] == "ok" and doc["run_status"] == {"a": "completed", "b": "completed"}
    # adam's betas/eps are not listed against gd, which has none; the shared lr is
    assert [c["key"] for c in doc["config"]] == ["optimizer.name", "optimizer.lr", "train.batch_size"]
    assert doc["config"][1] == {"key": "optimizer.lr", "a": 0.05, "b": 0.5}
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (a, b))
    assert {m["metric"]: (m["a"], m["b"]) for m in doc["metrics"]} == {
        k: (sa["metrics"][k], sb["metrics"][k]) for k in sa["metrics"]
    }
    text = cli("diff", a, b).stdout
    assert "optimizer.lr" in text and "final metrics" in text and "val_r2" in text


def test_diff_fills_defaults_and_ignores_where_the_run_lives(cli, runs_dir, tmp_path):
    shutil.copytree(runs_dir / "done", tmp_path / "elsewhere" / "copy")
    r = cli("diff", runs_dir / "done", tmp_path / "elsewhere" / "copy", "--json")
    assert r.code == 0 and r.json["config"] == []  # output.dir differs; data paths resolve to the same
    cfg = tmp_path / "elsewhere" / "copy" / "config.yaml"
    cfg.write_text(cfg.read_text().replace("  shuffle: true\n", ""))  # left out: the default (true) again
    assert cli("diff", runs_dir / "done", cfg.parent, "--json").json["config"] == []
    r = cli("diff", runs_dir / "done", runs_dir / "early", "--json")
    assert [c["key"] for c in r.json["config"]] == ["train.epochs", "train.early_stopping"]
    assert r.json["config"][1]["a"] is None and r.json["config"][1]["b"]["patience"] == 2


def test_export_tensorboard_holds_exactly_the_scalars_of_metrics_jsonl(cli, runs_dir, tmp_path):
    require("tensorboardX")
    ea = require("tensorboard.backend.event_processing.event_accumulator")
    shutil.copytree(runs_dir, tmp_path / "runs", ignore=shutil.ignore_patterns(".trainkit.lock"))
    names = ["done", "diverged", "cmp/gd-lr0.5-seed0"]
    r = cli("export", *[tmp_path / "runs" / n for n in names], "--format", "tensorboard", "--json")
    assert r.code == 0, r.stderr
    for name in names:
        run = tmp_path / "runs" / name
        (event,) = run.glob("events.out.tfevents.*")
        acc = ea.EventAccumulator(str(run), size_guidance={ea.SCALARS: 0})
        acc.Reload()
        expected: dict[str, list] = {}
        for row in jsonl(run):
            for k, v in row.items():
                if k != "epoch" and v is not None:  # a diverged run's null losses are no scalars
                    with np.errstate(over="ignore"):  # TensorBoard keeps float32: 1e300 is inf there
                        expected.setdefault(k, []).append((row["epoch"], np.float32(v)))
        assert set(acc.Tags()["scalars"]) == set(expected), name
        for tag, points in expected.items():
            got = [(e.step, np.float32(e.value)) for e in acc.Scalars(tag)]
            assert got == points, (name, tag)
        assert "lr" in expected
        hp = acc.PluginTagToContent("hparams")
        assert any(b"optimizer.lr" in content for content in hp.values())
    # a second export is refused; --overwrite replaces, still one event file per run
    done = tmp_path / "runs" / "done"
    r = cli("export", done, "--format", "tensorboard")
    assert r.code == 2 and "--overwrite" in r.stderr
    assert cli("export", done, "--format", "tensorboard", "--overwrite").code == 0
    assert len(list(done.glob("events.out.tfevents.*"))) == 1


def test_export_a_running_run_is_refused(cli, runs_dir, live_lock):
    require("tensorboardX")
    r = cli("export", runs_dir / "live", "--format", "tensorboard")
    assert r.code == 2 and "still running" in r.stderr


def test_export_without_tensorboardx_says_how_to_get_it(cli, runs_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    r = cli("export", runs_dir / "done", "--format", "tensorboard")
    assert r.code == 2 and "pip install 'trainkit[tensorboard]'" in r.stderr


def test_a_live_process_shows_as_running_then_killed_as_interrupted(cli, tmp_path, write_config):
    cfg = write_config(LINREG_SMALL.replace("epochs: 20", "epochs: 10000000"))
    run = tmp_path / "runs" / "long"
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainkit", "train", str(cfg), "-d", str(run), "--progress", "none"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        metrics = run / "metrics.jsonl"
        while time.time() < deadline and (not metrics.exists() or metrics.read_bytes().count(b"\n") < 3):
            time.sleep(0.05)
        (row,) = cli("runs", tmp_path / "runs", "--json").json["runs"]
        assert row["status"] == "running" and row["epochs"] >= 2 and row["wall_s"] > 0
    finally:
        proc.kill()  # SIGKILL: no summary.json, no checkpoint on the way out
        proc.wait(timeout=60)
    (row,) = cli("runs", tmp_path / "runs", "--json").json["runs"]
    assert row["status"] == "interrupted" and "killed" in row["note"]  # each row is one write(): never half there
    assert not (run / "summary.json").exists()
