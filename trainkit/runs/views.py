"""Views of run directories: find them and summarise each in one row (`trainkit runs`),
load their curves (`trainkit plot`), set two configs side by side (`trainkit diff`). Nothing
here writes into a run dir (the TensorBoard export, which does, is trainkit.runs.export).

`runs` must answer on a thousand run dirs in well under a second, so a row reads little:
- summary.json (indent=2, written by rundir.json_text) can be megabytes, most of it the
  parameters and the indented history. Its top-level entries start on lines with exactly two
  spaces of indent (JSON strings hold no raw newline, nested keys are indented deeper), so
  the small entries (status, epochs_run, metrics; timing, config) are cut out by position
  and parsed alone; anything unexpected falls back to parsing the whole file.
- the best value of a metric needs every epoch: it is scanned out of the compact
  metrics.jsonl with one regex (0.3 ms for 1,000 epochs, where json-parsing the same rows
  takes 2-3 ms); only its last line is parsed as JSON.
- a run is `running` while another process holds its lock (a non-blocking flock probe).
"""

from __future__ import annotations

import datetime as _dt
import difflib
import fcntl
import json
import mmap
import os
import re
import time
from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from trainkit.errors import TrainkitError

# The names trainkit.runs.rundir writes (not imported from it: that loads pydantic, 0.17 s).
SUMMARY, METRICS, CONFIG, LOCK = "summary.json", "metrics.jsonl", "config.yaml", ".trainkit.lock"
# Config keys that differ between any two runs without making them different runs.
IGNORED_KEYS = ("output.dir", "output.overwrite")
SORT_KEYS = ("name", "model", "optimizer", "status", "epochs", "best", "final", "wall", "when")
FILTER_KEYS = ("name", "model", "optimizer", "status", "epochs")


class ViewError(TrainkitError):
    kind = "runs"


class Damaged(Exception):
    """A run file that cannot be read; its message says which and why."""


def lower_is_better(metric: str) -> bool:
    """Losses and errors go down, accuracy-like scores up (as early stopping's mode: auto)."""
    return metric.endswith(("loss", "mse", "mae"))


# --------------------------------------------------------------------------- finding runs


def _is_run_dir(names: set[str]) -> bool:
    return METRICS in names or SUMMARY in names or (CONFIG in names and LOCK in names)


def find_runs(roots: list[str | Path]) -> list[tuple[str, Path]]:
    """(name, path) of every run dir under each root (itself, or any folder below it; a run
    dir's own subfolders are not searched), sorted by name. The name is the path relative
    to its root (the root's own name when the root is a run dir)."""
    found: list[tuple[str, Path]] = []
    for root in map(Path, roots):
        if not root.exists():
            raise ViewError(f"{root}: no such directory\n    help: pass the folder that holds your run dirs")
        if not root.is_dir():
            raise ViewError(f"{root}: not a directory\n    help: pass a run dir or a folder of run dirs")
        stack = [root]
        while stack:
            folder = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError:  # unreadable folder: nothing to show there
                continue
            names = {e.name for e in entries}
            if _is_run_dir(names):
                rel = folder.relative_to(root).as_posix()
                found.append((root.name if rel == "." else rel, folder))
                continue
            stack += [Path(e.path) for e in entries if e.is_dir() and not e.name.startswith(".")]
    return sorted(found)


def run_dirs(args: list[str | Path]) -> list[tuple[str, Path]]:
    """The runs named on a command line: each a run dir, or a folder of them (a comparison,
    a sweep) that expands to its runs."""
    out = []
    for a in args:
        runs = find_runs([a])
        if not runs:
            raise ViewError(
                f"{a}: not a run directory (no {METRICS} or {SUMMARY}), and no run dirs below it\n"
                "    help: trainkit train CONFIG --output-dir DIR writes one"
            )
        out += runs if len(runs) > 1 or runs[0][1] != Path(a) else [(str(a), Path(a))]
    return out


def is_running(path: Path) -> bool:
    """True while a live process holds the run dir's lock (RunDir takes it exclusively;
    the kernel drops it when the process dies, however it dies). The probe holds a shared
    lock for a few microseconds: a run starting in that instant is refused as if another
    process wrote there."""
    try:
        fd = os.open(os.path.join(path, LOCK), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the lock, if we got it
    return False


# --------------------------------------------------------------------------- one row per run


@dataclass
class RunRow:
    name: str
    path: str
    model: str | None = None
    optimizer: str | None = None
    status: str = "damaged"
    epochs: int | None = None
    best: float | None = None
    final: float | None = None
    wall_s: float | None = None
    when: float | None = None  # when the run last wrote (seconds since the epoch)
    metrics: tuple[str, ...] = ()  # the metric keys the run records
    note: str | None = None

    def to_dict(self, metric: str) -> dict:
        d = asdict(self)
        d.pop("metrics")
        d["metric"] = metric
        d["when"] = _iso(self.when)
        return d


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _entry(mm, key: str, from_end: bool):
    """The value of a top-level key of an indent=2 JSON object, parsed alone (KeyError if
    the key is not there). Keys after `params` are searched from the end, so the parameters
    are never scanned."""
    marker = b'\n  "' + key.encode() + b'": '
    i = mm.rfind(marker) if from_end else mm.find(marker)
    if i < 0:
        raise KeyError(key)
    start = i + len(marker)
    end = mm.find(b'\n  "', start)
    if end < 0:
        end = mm.rfind(b"\n}")
    return json.loads(mm[start:end].rstrip().rstrip(b","))


def _wall_s(mm) -> float:
    """timing.wall_s, its first entry (the rest, one time per epoch, is not parsed)."""
    i = mm.rfind(b'\n  "timing": {\n    "wall_s": ')
    if i < 0:
        raise KeyError("timing")
    return float(mm[i + 30 : mm.find(b",", i + 30)])


def _whole(mm) -> dict:
    try:
        doc = json.loads(mm[:])
    except ValueError:
        raise Damaged(f"{SUMMARY} is not valid JSON (incomplete or edited?)") from None
    if not isinstance(doc, dict):
        raise Damaged(f"{SUMMARY} is not a JSON object")
    return doc


def read_summary(path: Path) -> dict:
    """The small entries of a summary.json: status, epochs_run, stop_reason, best_epoch,
    metrics, timing, config (and steps, for an optimizer-playground run)."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise Damaged(f"{SUMMARY} is empty")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            if not mm[-16:].rstrip().endswith(b"}"):
                raise Damaged(f"{SUMMARY} is incomplete")
            try:
                out = {k: _entry(mm, k, False) for k in ("status", "epochs_run", "stop_reason", "metrics")}
                out["config"] = _entry(mm, "config", True)
                out["timing"] = {"wall_s": _wall_s(mm)}
            except (KeyError, ValueError):  # another layout (a playground run, an edited file)
                out = _whole(mm)
    if not isinstance(out.get("status"), str):
        raise Damaged(f"{SUMMARY} has no status")
    return out


_NUMBER = rb'": (-?[0-9][0-9.eE+-]*|null)[,}]'


def read_metrics(path: Path, metric: str | None, partial_ok: bool) -> tuple[dict, float | None]:
    """The last row of metrics.jsonl, and the best value of `metric` over every epoch (None:
    not recorded, or never finite). An incomplete last line (the writer was killed mid-row)
    is damage unless the run is still running (`partial_ok`)."""
    data = path.read_bytes()
    cut = data.rfind(b"\n") + 1
    if cut < len(data) and not partial_ok:
        raise Damaged(f"{METRICS}: its last line is incomplete")
    data = data[:cut]
    if not data:
        return {}, None
    last_line = data[data.rfind(b"\n", 0, len(data) - 1) + 1 :]
    try:
        last = json.loads(last_line)
    except ValueError:
        last = None
    if not isinstance(last, dict):
        raise Damaged(f"{METRICS}: its last line is not a JSON row")
    if metric is None or metric not in last:
        return last, None
    found = re.findall(b'"' + re.escape(metric.encode()) + _NUMBER, data)
    if len(found) != data.count(b"\n"):  # every row has the same columns: a missing one is damage
        raise Damaged(f"{METRICS}: a row without {metric} or a line that is not JSON")
    if b"null" in found:  # strict JSON: null is its only non-finite value
        found = [v for v in found if v != b"null"]
    return last, (min if lower_is_better(metric) else max)(map(float, found)) if found else None


def _stat_ns(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _config_names(config: dict | None) -> tuple[str | None, str | None]:
    def name(block):
        return block.get("name") if isinstance(block, dict) else None

    if not isinstance(config, dict):
        return None, None
    return name(config.get("model")), name(config.get("optimizer"))


def _read_config_yaml(path: Path) -> dict | None:
    import yaml

    try:  # only for runs without a summary (running, killed) or for plot/diff: a few
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return doc if isinstance(doc, dict) else None


def read_row(name: str, path: Path, metric: str | None) -> RunRow:
    """One run's row; a run whose files cannot be read is `damaged`, with a note why."""
    row = RunRow(name, str(path))
    try:
        _fill(row, path, metric)
    except Damaged as e:
        row.status, row.note = "damaged", str(e)
    except OSError as e:
        row.status, row.note = "damaged", f"cannot read: {e.strerror or e}"
    return row


def _fill(row: RunRow, path: Path, metric: str | None) -> None:
    running = is_running(path)
    t_summary, t_metrics, t_config = (_stat_ns(os.path.join(path, f)) for f in (SUMMARY, METRICS, CONFIG))
    # A summary older than the metrics belongs to an earlier stint (a resume that is running
    # or was killed since): the metrics file is then the newer truth.
    summary = None
    if t_summary is not None and not running and (t_metrics is None or t_summary >= t_metrics):
        summary = read_summary(path / SUMMARY)
    last, row.best = read_metrics(path / METRICS, metric, running) if t_metrics is not None else ({}, None)
    row.metrics = tuple(k for k in last if k != "epoch")
    row.final = last.get(metric)
    if summary is not None:
        row.status = summary["status"]
        row.epochs = summary.get("epochs_run", summary.get("steps"))
        row.wall_s = (summary.get("timing") or {}).get("wall_s")
        row.model, row.optimizer = _config_names(summary.get("config"))
        row.when = t_summary / 1e9
        if row.status == "interrupted":
            row.note = summary.get("stop_reason")
    else:
        row.epochs = last.get("epoch", 0)
        stamps = [t for t in (t_metrics, t_config) if t is not None]
        last_write = max(stamps) if stamps else None
        row.when = last_write / 1e9 if last_write else None
        if running:
            row.status = "running"
            row.wall_s = time.time() - t_config / 1e9 if t_config else None
        else:
            row.status = "interrupted"
            row.note = f"no {SUMMARY}: the process ended without finishing (killed?)"
            row.wall_s = (last_write - t_config) / 1e9 if t_config and last_write else None
    if row.model is None and t_config is not None:
        row.model, row.optimizer = _config_names(_read_config_yaml(path / CONFIG))


# --------------------------------------------------------------------------- the table


STATUSES = ("completed", "early_stopped", "diverged", "interrupted", "running", "damaged")


def parse_filters(specs: list[str]) -> dict[str, set[str]]:
    """KEY=VALUE[,VALUE...] each; values (shell-style patterns: name=cmp/*) of one key are
    alternatives, keys must all match."""
    out: dict[str, set[str]] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        key = key.strip()
        if not sep or not key or not value:
            raise ViewError(f"--filter {spec!r}: must be KEY=VALUE\n    help: e.g. --filter status=diverged")
        if key not in FILTER_KEYS:
            raise ViewError(f"--filter {spec!r}: unknown key {key!r}{_did_you_mean(key, FILTER_KEYS)}")
        values = {v.strip() for v in value.split(",")}
        for v in values if key == "status" else ():  # a typo would silently match nothing
            if v not in STATUSES and not any(c in v for c in "*?["):
                raise ViewError(f"--filter {spec!r}: unknown status {v!r}{_did_you_mean(v, STATUSES)}")
        out.setdefault(key, set()).update(values)
    return out


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    hint = f"did you mean {close[0]!r}?" if close else "choose one of: " + ", ".join(choices)
    return f"\n    help: {hint}"


def check_sort(key: str) -> tuple[str, bool]:
    """`KEY` ascending or `-KEY` descending."""
    desc = key.startswith("-")
    bare = key.lstrip("-")
    if bare not in SORT_KEYS:
        raise ViewError(f"--sort {key!r}: unknown key{_did_you_mean(bare, SORT_KEYS)}")
    return bare, desc


def _sort_value(row: RunRow, key: str):
    return row.wall_s if key == "wall" else getattr(row, key)


def table(
    roots: list[str | Path], metric: str | None = None, filters: list[str] = (), sort: str = "name"
) -> tuple[str, list[RunRow]]:
    """The runs under `roots`, filtered and sorted, with the best and final value of
    `metric` (default: val_loss where the runs record it, else train_loss)."""
    wanted = parse_filters(list(filters))
    key, desc = check_sort(sort)
    found = find_runs(list(roots))
    chosen = metric or "val_loss"
    rows = [read_row(n, p, chosen) for n, p in found]
    recorded = {k for r in rows for k in r.metrics}
    if metric is None and "val_loss" not in recorded and "train_loss" in recorded:
        chosen = "train_loss"
        rows = [read_row(n, p, chosen) for n, p in found]
    elif metric is not None and rows and recorded and metric not in recorded:
        raise ViewError(f"--metric {metric!r}: no run here records it{_did_you_mean(metric, sorted(recorded))}")
    rows = [r for r in rows if all(any(fnmatchcase(str(getattr(r, k)), v) for v in vs) for k, vs in wanted.items())]
    present = [r for r in rows if _sort_value(r, key) is not None]
    missing = [r for r in rows if _sort_value(r, key) is None]  # always last
    present.sort(key=lambda r: _sort_value(r, key), reverse=desc)
    return chosen, present + missing


# --------------------------------------------------------------------------- curves, configs


def history(path: Path) -> list[dict]:
    """Every row of a run's metrics.jsonl (a last line cut short by a kill is left out)."""
    rows = []
    try:
        text = (path / METRICS).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ViewError(f"{path}: no {METRICS} (not a training run dir)") from None
    lines = text.split("\n")
    for i, line in enumerate(lines[:-1] if not text.endswith("\n") else lines, 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                raise ViewError(f"{path / METRICS}:{i}: not a JSON row (the file is damaged)") from None
    return rows


def resolved_config(path: Path) -> dict:
    """A run's config.yaml as dotted keys, defaults filled in by the current schema where it
    still validates, with file paths absolute (they are stored relative to the run dir)."""
    from trainkit.runs.checkpoint import _leaves
    from trainkit.runs.rundir import PATH_KEYS

    file = path / CONFIG
    if not file.is_file():
        raise ViewError(f"{path}: no {CONFIG} (not a run dir?)")
    try:
        from trainkit.config import load_config

        config = load_config(file, kind="any").resolved()
    except TrainkitError:  # written by another version: show it as it is
        config = _read_config_yaml(file)
        if config is None:
            raise ViewError(f"{file}: not a readable YAML mapping") from None
    flat = _leaves(config)
    for keys in PATH_KEYS:
        k = ".".join(keys)
        if isinstance(flat.get(k), str):
            flat[k] = str((path / flat[k]).resolve())
    return {k: v for k, v in flat.items() if k not in IGNORED_KEYS}


def config_diff(configs: list[dict]) -> list[str]:
    """The keys whose values differ between the configs; a block whose name differs (adam
    vs sgd) shows its name and the keys both rules have (lr), not every key they do not
    share, and a block that is null in one config (no early stopping) as the block itself."""
    keys = list(dict.fromkeys(k for c in configs for k in c))
    changed = [k for k in keys if len({json.dumps(value(c, k), sort_keys=True) for c in configs}) > 1]
    renamed = {k[: -len(".name")] for k in changed if k.endswith(".name")}
    out = [k for k in changed if all(k in c for c in configs) or not any(k.startswith(b + ".") for b in renamed)]
    nulls = {k for c in configs for k, v in c.items() if v is None}
    return list(dict.fromkeys(next((b for b in nulls if k.startswith(b + ".")), k) for k in out))


def value(config: dict, key: str):
    """A dotted key's value; a block given as its sub-keys comes back as a mapping."""
    if key in config:
        return config[key]
    sub = {k[len(key) + 1 :]: v for k, v in config.items() if k.startswith(key + ".")}
    return sub or None


def show(v) -> str:
    return "none" if v is None else v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))


def labels(runs: list[tuple[str, Path]]) -> list[str]:
    """What tells the runs apart: `key=value` for as few of the config keys that differ as
    make every label unique (a block's name stands for the block: `optimizer=adam`), chosen
    greedily, the key that splits the runs most first; runs of one config by their names."""
    if len(runs) < 2:
        return [n for n, _ in runs]
    configs = [resolved_config(p) for _, p in runs]
    keys, chosen = config_diff(configs), []

    def groups(ks) -> int:
        return len({tuple(show(value(c, k)) for k in ks) for c in configs})

    while keys and groups(chosen) < len(configs):
        best = max(keys, key=lambda k: groups([*chosen, k]))  # max keeps the first of equals
        if groups([*chosen, best]) == groups(chosen):
            break
        chosen.append(best)
        keys.remove(best)
    if not chosen:
        return [n for n, _ in runs]
    out = [" ".join(_short(k, value(c, k)) for k in chosen) for c in configs]
    return out if len(set(out)) == len(out) else [f"{n}: {lab}" for (n, _), lab in zip(runs, out)]


def _short(key: str, v) -> str:
    text = show(v)
    return f"{key.removesuffix('.name')}={text if len(text) <= 24 else text[:23] + '…'}"


def final_metrics(path: Path) -> tuple[dict, str]:
    """(the metrics a run reported, its status): summary.json's, else the last row's."""
    if (path / SUMMARY).is_file():
        try:
            s = read_summary(path / SUMMARY)
            return dict(s.get("metrics") or {}), s["status"]
        except Damaged:
            pass
    rows = history(path)
    last = dict(rows[-1]) if rows else {}
    last.pop("epoch", None)
    last.pop("lr", None)
    return last, "running" if is_running(path) else "interrupted"


def diff(a: Path, b: Path) -> dict:
    """The config keys that differ between two runs, then their final metrics."""
    for p in (a, b):
        if not p.is_dir():
            raise ViewError(f"{p}: no such run directory")
    ca, cb = resolved_config(a), resolved_config(b)
    keys = config_diff([ca, cb])
    (ma, sa), (mb, sb) = final_metrics(a), final_metrics(b)
    names = list(dict.fromkeys([*ma, *mb]))
    return {
        "a": str(a),
        "b": str(b),
        "run_status": {"a": sa, "b": sb},
        "config": [{"key": k, "a": value(ca, k), "b": value(cb, k)} for k in keys],
        "metrics": [{"metric": k, "a": ma.get(k), "b": mb.get(k)} for k in names],
    }


def check_metrics(runs_rows: list[list[dict]], metrics: list[str]) -> None:
    """Every asked-for metric must be recorded by some run: a typo gets a suggestion."""
    recorded = sorted({k for rows in runs_rows for r in rows for k in r if k != "epoch"})
    for m in metrics:
        if m not in recorded:
            raise ViewError(f"--metric {m!r}: no run here records it{_did_you_mean(m, recorded)}")


def default_metric(runs_rows: list[list[dict]]) -> str:
    return "val_loss" if any(rows and "val_loss" in rows[0] for rows in runs_rows) else "train_loss"


# --------------------------------------------------------------------------- plot inputs

PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def check_plot_output(output: Path, overwrite: bool) -> None:
    """Where `plot --output` may write: an image file name in an existing folder; an
    existing file only with --overwrite. Checked before any run is read."""
    if output.suffix.lower() not in PLOT_SUFFIXES:
        raise ViewError(
            f"{output}: unknown image type {output.suffix or '(no extension)'!r}\n"
            f"    help: end the name in {', '.join(PLOT_SUFFIXES)}, e.g. --output curves.png"
        )
    if output.is_dir():
        raise ViewError(f"{output}: is a folder\n    help: give a file name, e.g. --output curves.png")
    if not output.resolve().parent.is_dir():
        raise ViewError(f"{output}: the folder {output.resolve().parent} does not exist\n    help: create it first")
    if output.exists() and not overwrite:
        raise ViewError(f"{output}: already exists\n    help: pass --overwrite to replace it, or choose another file")


def curves(args: list[str | Path], metrics: list[str] | None) -> tuple[list[dict], list[str]]:
    """The runs named by `args` (comparison and sweep folders expanded), each as {label,
    name, path, rows}, and the metrics to show (checked: a typo gets a suggestion)."""
    runs = run_dirs(args)
    all_rows = [history(p) for _, p in runs]
    metrics = metrics or [default_metric(all_rows)]
    check_metrics(all_rows, metrics)
    return [
        {"label": lab, "name": n, "path": str(p), "rows": rows}
        for (n, p), lab, rows in zip(runs, labels(runs), all_rows)
    ], metrics
