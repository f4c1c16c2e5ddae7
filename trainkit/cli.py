"""The `trainkit` command: parse arguments, call the Python API, render the result.

No training logic lives here. Heavy imports (numpy, pydantic, the engine) happen inside the
commands so that `trainkit --help` starts fast.

Exit codes: 0 finished, 1 diverged, 2 bad usage / config / data, 130 SIGINT, 143 SIGTERM.
"""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train models from YAML configs on a numpy engine with hand-written backprop.",
)


def _hide_flag_types() -> None:
    # typer's rich help shows every boolean flag as `--json <bool>`, as if it took a value; a
    # flag takes none. Show no type for flags (--help and --version included).
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is not None:
        TyperOption.display_type_rich = lambda self, ctx: None if self.is_flag else shown(self, ctx)


_hide_flag_types()


def _print_version(value: bool) -> None:
    if value:
        from trainkit import __version__

        print(f"trainkit {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print trainkit's version and exit."
    ),
) -> None:
    pass


class ProgressMode(str, Enum):
    auto = "auto"
    bar = "bar"
    plain = "plain"
    none = "none"


def _emit_json(doc: dict) -> None:
    from trainkit.runs.rundir import json_text

    try:
        sys.stdout.write(json_text(doc, indent=2) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        _closed_pipe()


def _closed_pipe():
    """The reader went away (`trainkit train ... | head -1`): stop quietly with the shell's
    code for a closed pipe (128 + SIGPIPE), not a traceback or the "diverged" code."""
    try:  # nothing left to flush into the closed pipe at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file (tests capture stdout)
        pass
    raise typer.Exit(141)


def _fail(err, as_json: bool):
    """Print a user error (never a traceback) and exit with its code."""
    if as_json:
        _emit_json({"status": "error", "error": err.to_dict()})
    else:
        print(f"error: {err}", file=sys.stderr)
    raise typer.Exit(err.exit_code)


def _load(config: Path, overrides: list[str], seed: Optional[int] = None, output_dir: Optional[Path] = None):
    from trainkit.config import load_config

    extra = list(overrides)
    if seed is not None:
        extra.append(f"seed={seed}")
    if output_dir is not None:
        extra.append(f"output.dir={json.dumps(str(output_dir))}")
    return load_config(config, extra)


SetOpt = typer.Option(
    None,
    "--set",
    "-s",
    metavar="KEY=VALUE",
    help="Override a config key: --set optimizer.lr=0.01 (value parsed as YAML). Repeatable.",
)
SeedOpt = typer.Option(None, "--seed", help="Override the config's seed.")
JsonOpt = typer.Option(False, "--json", help="Write exactly one JSON document to stdout (human output goes to stderr).")
OutOpt = typer.Option(
    None, "--output-dir", "-d", help="Write the run directory here (config, metrics, checkpoints, summary)."
)
ProgressOpt = typer.Option(ProgressMode.auto, "--progress", help="auto: a bar on terminals, plain lines elsewhere.")


def _train(config: Path, overrides, seed, output_dir, overwrite, resume, as_json, progress, print_config=False):
    from trainkit import api
    from trainkit.config import dump_yaml
    from trainkit.errors import EXIT_DIVERGED, EXIT_SIGINT, EXIT_SIGTERM, TrainkitError
    from trainkit.report.terminal import Progress, choose_mode, make_console, render_result

    try:
        loaded = _load(config, overrides or [], seed, output_dir)
        if print_config:
            api.build(loaded)  # fills in what the data decides: the default loss, the batch size
            sys.stdout.write(dump_yaml(loaded.resolved()))
            return
        out = sys.stderr if as_json else sys.stdout
        mode = "none" if as_json and progress == "auto" else progress
        mode = choose_mode(mode, out)
        console = make_console(out, plain=mode != "bar")
        cfg = loaded.config
        with Progress(mode, out, cfg.train.epochs, cfg.train.log_every) as prog:
            result = api.train(
                loaded,
                on_epoch=prog.update,
                on_start=prog.start,
                output_dir=output_dir,
                overwrite=overwrite,
                resume=resume,
            )
        if as_json:
            _emit_json(result.to_dict())
        if not as_json or mode != "none":
            render_result(result, console)
            if result.run_dir is not None:
                console.print(f"run saved to {result.run_dir}/")
    except TrainkitError as err:
        _fail(err, as_json)
    except BrokenPipeError:
        _closed_pipe()
    if result.status == "diverged":
        raise typer.Exit(EXIT_DIVERGED)
    if result.status == "interrupted":
        if result.run_dir is not None:
            print(f"checkpoint saved; resume with: trainkit resume {result.run_dir}", file=sys.stderr)
        raise typer.Exit(EXIT_SIGTERM if "SIGTERM" in result.stop_reason else EXIT_SIGINT)


@app.command()
def train(
    config: Path = typer.Argument(..., help="YAML config file.", show_default=False),
    set_: Optional[list[str]] = SetOpt,
    seed: Optional[int] = SeedOpt,
    output_dir: Optional[Path] = OutOpt,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run directory."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in the run directory from its checkpoint."),
    as_json: bool = JsonOpt,
    progress: ProgressMode = ProgressOpt,
    print_config: bool = typer.Option(False, "--print-config", help="Print the fully resolved config and exit."),
) -> None:
    """Train a model from a config and print the final metrics and parameters."""
    _train(config, set_, seed, output_dir, overwrite, resume, as_json, progress.value, print_config)


@app.command()
def resume(
    run_dir: Path = typer.Argument(..., help="A run directory written by `trainkit train --output-dir`."),
    set_: Optional[list[str]] = SetOpt,
    as_json: bool = JsonOpt,
    progress: ProgressMode = ProgressOpt,
) -> None:
    """Continue a stopped run from its last checkpoint (same as train RUN_DIR/config.yaml --resume)."""
    _train(run_dir / "config.yaml", set_, None, run_dir, False, True, as_json, progress.value)


@app.command("compare-optimizers")
def compare_optimizers(
    config: Path = typer.Argument(
        ..., help="A training config, or a playground config (problem: rosenbrock, ...).", show_default=False
    ),
    optimizer: Optional[list[str]] = typer.Option(
        None,
        "--optimizer",
        "-o",
        metavar="SPEC",
        help='An optimizer to compare, e.g. -o sgd -o "sgd momentum=0.9 nesterov=true" -o "adam lr=0.01". '
        "Repeatable. Default: the config's compare block, else gd, sgd, momentum, adam.",
    ),
    seeds: Optional[int] = typer.Option(
        None, "--seeds", min=1, help="Repeat every optimizer with N seeds; mean ± std."
    ),
    lr_grid: Optional[str] = typer.Option(
        None, "--lr-grid", metavar="LRS", help="Comma-separated learning rates to try per optimizer, or auto."
    ),
    target_loss: Optional[float] = typer.Option(
        None, "--target-loss", help="Report when each run first reaches this loss."
    ),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Worker processes (default: CPU cores)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write loss curves (or optimizer paths) to this PNG."),
    output_dir: Optional[Path] = typer.Option(
        None, "--output-dir", help="Write each run's directory plus comparison.csv and .json here."
    ),
    set_: Optional[list[str]] = SetOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Run the same problem under several optimizers, fairly, and show them side by side."""
    from trainkit.compare import runner as compare
    from trainkit.errors import ConfigError, TrainkitError
    from trainkit.report.terminal import choose_mode, comparison_table, make_console

    try:
        grid = None
        if lr_grid is not None:
            try:
                grid = "auto" if lr_grid.strip() == "auto" else [float(v) for v in lr_grid.split(",") if v.strip()]
            except ValueError:
                raise ConfigError.one(
                    "--lr-grid",
                    f"expected numbers separated by commas, got {lr_grid!r}",
                    "e.g. --lr-grid 1e-3,1e-2,1e-1 or --lr-grid auto",
                ) from None
            if grid != "auto" and (not grid or min(grid) <= 0):
                raise ConfigError.one("--lr-grid", "learning rates must be positive numbers")
        if plot is not None:
            from trainkit.report.plots import require_matplotlib

            require_matplotlib()
        comp = compare.compare(config, optimizer, seeds, grid, target_loss, jobs, output_dir, set_ or [])
        if plot is not None:
            from trainkit.report.plots import plot_comparison

            plot_comparison(comp, plot)
    except TrainkitError as err:
        _fail(err, as_json)
    if as_json:
        _emit_json(comp.to_dict())
        return
    console = make_console(sys.stdout, plain=choose_mode("auto", sys.stdout) == "plain")
    console.print(comparison_table(comp))
    winner = next((r for r in comp.summary if r.get("winner")), None)
    if winner:
        what = "final f" if comp.kind == "playground" else ("val loss" if "val_loss" in winner else "train loss")
        console.print(f"★ lowest {what}: {winner['optimizer']} (lr {winner['lr']:g})")
    for s in comp.lr_search:
        console.print(
            f"lr search {s['optimizer']}: "
            + ", ".join(
                f"{e['lr']:g}→{'diverged' if e['score'] == float('inf') else format(e['score'], '.4g')}"
                for e in s["scores"]
            )
        )
    if plot is not None:
        console.print(f"plot written to {plot}")
    if output_dir is not None:
        console.print(f"runs and comparison.csv/json written to {output_dir}/")


@app.command()
def sweep(
    spec: Path = typer.Argument(..., help="A config with a `sweep:` block.", show_default=False),
    jobs: int = typer.Option(
        1, "--jobs", "-j", min=1, help="Trials at a time (worker processes, one BLAS thread each)."
    ),
    executor: str = typer.Option("local", "--executor", help="local (this machine) or ray (a Ray cluster)."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (auto, or HOST:PORT)."),
    output_dir: Optional[Path] = typer.Option(
        None, "--output-dir", "-d", help="The sweep dir (default: runs/SPEC-sweep)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the sweep in the sweep dir: run what did not end."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="With --resume: rerun failed trials too."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the metric against each swept parameter (PNG)."),
    as_json: bool = JsonOpt,
) -> None:
    """Run a hyperparameter sweep: every trial an ordinary run dir, results in one table."""
    from trainkit.errors import EXIT_DIVERGED, EXIT_SIGINT, EXIT_SIGTERM, ConfigError, TrainkitError
    from trainkit.report.terminal import make_console
    from trainkit.sweep import runner
    from trainkit.sweep.report import sweep_table

    err_console = make_console(sys.stderr, plain=True)
    try:
        if executor not in ("local", "ray"):
            raise ConfigError.one("--executor", f"unknown executor {executor!r}", "choose one of: local, ray")
        if retry_failed and not resume:
            raise ConfigError.one("--retry-failed", "reruns the failed trials of a sweep", "add --resume")
        if plot is not None:
            from trainkit.report.plots import require_matplotlib

            require_matplotlib()

        def on_trial(row):
            if not as_json:
                what = f"{row['best']:.4g}" if row.get("best") is not None else row.get("error") or "-"
                err_console.print(f"trial {row['trial']} {row['status']} ({row['seconds']:.1f}s): {what}")

        sw = runner.sweep(spec, jobs, output_dir, resume, retry_failed, executor, address, on_trial)
        if plot is not None:
            from trainkit.sweep.plots import plot_sweep

            plot_sweep(sw, plot)
    except TrainkitError as err:
        _fail(err, as_json)
    if as_json:
        _emit_json(sw.to_dict())
    else:
        console = make_console(sys.stdout, plain=True)
        console.print(sweep_table(sw))
        doc = sw.to_dict()
        if doc["best_command"]:
            print(f"best: {doc['best_command']}")  # one line, unwrapped: to copy and run
        print(f"sweep dir: {sw.out}/ (results.csv, trials.jsonl, trials/)")
        if sw.message:
            print(sw.message, file=sys.stderr)
    if sw.status == "interrupted":
        raise typer.Exit(EXIT_SIGTERM if "SIGTERM" in sw.message else EXIT_SIGINT)
    if sw.status == "stopped" or (sw.rows and all(r["status"] in runner.FAILED for r in sw.rows.values())):
        raise typer.Exit(EXIT_DIVERGED)


@app.command()
def validate(
    config: Path = typer.Argument(..., help="YAML config file.", show_default=False),
    set_: Optional[list[str]] = SetOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Check a config (and its data) without training: one OK line, or every error."""
    from trainkit import api
    from trainkit.errors import TrainkitError

    try:
        loaded = _load(config, set_ or [])
        if loaded.config.sweep is not None:  # every trial's config, as `trainkit sweep` checks them
            from trainkit.sweep import runner

            runner.check_points(loaded, runner.search.check_points(loaded.config.sweep))
        exp = api.build(loaded)
    except TrainkitError as err:
        _fail(err, as_json)
    cfg, i = loaded.config, exp.info
    summary = (
        f"{cfg.model.name} ({i['n_params']} parameters), {cfg.loss.name} loss, {cfg.optimizer.name} "
        f"lr={cfg.optimizer.lr}, {i['n_train']} training samples [{i['task']}], {cfg.train.epochs} epochs"
    )
    if as_json:
        _emit_json({"status": "ok", "config": loaded.resolved(), "info": i})
    else:
        print(f"OK {config}: {summary}")


IgnoreExtraOpt = typer.Option(
    False, "--ignore-extra", help="Skip columns the training file did not have (default: exit 2 naming them)."
)


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="A run directory."),
    data: Optional[Path] = typer.Option(None, "--data", help="Evaluate on this file instead of the run's test split."),
    ignore_extra: bool = IgnoreExtraOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Metrics of a trained run on its test split (or a given file)."""
    from trainkit.errors import TrainkitError
    from trainkit.report.terminal import choose_mode, make_console, metrics_table
    from trainkit.runs import inference

    try:
        out = inference.evaluate(run_dir, str(data) if data else None, ignore_extra)
    except TrainkitError as err:
        _fail(err, as_json)
    if as_json:
        _emit_json({"status": "ok", **out})
        return
    console = make_console(sys.stdout, plain=choose_mode("auto", sys.stdout) == "plain")
    console.print(f"{out['split']} split of {run_dir}" if data is None else f"{data}", f"({out['n']} samples)")
    console.print(metrics_table(out["metrics"]))


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A run directory."),
    data: Path = typer.Option(..., "--data", help="CSV or NPZ file with the same feature columns as training."),
    output: Optional[Path] = typer.Option(
        None, "--output", help="Write predictions to this CSV, outside the run directory (default: stdout)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output file."),
    ignore_extra: bool = IgnoreExtraOpt,
) -> None:
    """Predict with a trained run: labels (and class probabilities) or values, as CSV."""
    from trainkit.errors import TrainkitError
    from trainkit.runs import inference

    try:
        if output is not None:
            inference.check_output(run_dir, data, output, overwrite)
        header, rows = inference.predict(run_dir, str(data), ignore_extra)
    except TrainkitError as err:
        _fail(err, False)
    text = inference.to_csv(header, rows)
    if output is None:
        sys.stdout.write(text)
    else:
        from trainkit.runs.rundir import atomic_write

        atomic_write(output, text.encode())
        print(f"wrote {len(rows)} predictions to {output}", file=sys.stderr)


@app.command("list")
def list_(
    kind: Optional[str] = typer.Argument(
        None, help="datasets, augmentations, models, layers, losses, optimizers or schedules."
    ),
) -> None:
    """List the registered components with their parameters and defaults."""
    from trainkit import registry

    kinds = registry.KINDS
    if kind is not None:
        k = kind if kind in kinds else kind + "s"
        if k not in kinds:
            import difflib

            close = difflib.get_close_matches(kind, kinds, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            print(f"error: unknown kind {kind!r}{hint}; choose one of: {', '.join(kinds)}", file=sys.stderr)
            raise typer.Exit(2)
        kinds = (k,)
    from rich.table import Table

    from trainkit.report.terminal import choose_mode, make_console

    console = make_console(sys.stdout, plain=choose_mode("auto", sys.stdout) == "plain")
    for k in kinds:
        table = Table(title=k, title_justify="left")
        table.add_column("name", style="bold")
        table.add_column("description")
        table.add_column("parameters (default)")
        for e in registry.entries(k):
            params = []
            for fname, f in e.schema.model_fields.items():
                if fname == "name":
                    continue
                default = "required" if f.is_required() else f.get_default(call_default_factory=True)
                if hasattr(default, "model_dump"):
                    default = default.model_dump(by_alias=True)
                params.append(f"{f.alias or fname}={default}")
            table.add_row(e.name, e.description, ", ".join(params))
        console.print(table)


def _interrupted(signum, frame) -> None:
    # Ctrl-C outside the training loop (loading, building, rendering): stop at once with the
    # documented code instead of click's "Aborted!" and exit 1. Every file write is atomic,
    # so nothing is left half-written. During training, api.train handles SIGINT itself.
    print("\ninterrupted", file=sys.stderr)
    os._exit(130)


def main() -> None:
    import signal

    signal.signal(signal.SIGINT, _interrupted)
    app()


if __name__ == "__main__":
    main()
