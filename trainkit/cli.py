"""The `trainkit` command: parse arguments, call the Python API, render the result.

No training logic lives here. Heavy imports (numpy, pydantic, the engine) happen inside the
commands so that `trainkit --help` starts fast.

Exit codes: 0 finished, 1 diverged, 2 bad usage / config / data, 130 SIGINT, 143 SIGTERM.
"""

from __future__ import annotations

import contextlib
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


_emitted = False  # a JSON document went to stdout: an interrupt after it adds none


def _emit_json(doc: dict) -> None:
    global _emitted
    from trainkit.runs.rundir import json_text

    _emitted = True
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

    extra: list = list(overrides)
    if seed is not None:
        extra.append((f"seed={seed}", f"--seed {seed}"))
    if output_dir is not None:
        extra.append((f"output.dir={json.dumps(str(output_dir))}", f"--output-dir {output_dir}"))
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
DeviceOpt = typer.Option(
    None, "--device", metavar="cpu|cuda|cuda:N", help="Compute on this device (train.device; cuda needs CuPy)."
)


def _with_device(overrides, device: Optional[str]) -> list:
    """--device as a train.device override (checked by the config schema)."""
    extra = list(overrides or [])
    return extra if device is None else [*extra, (f"train.device={json.dumps(device)}", f"--device {device}")]


ProgressOpt = typer.Option(ProgressMode.auto, "--progress", help="auto: a bar on terminals, plain lines elsewhere.")


class _JsonUsageErrors(typer.core.TyperCommand):
    """Usage errors (a bad option value, a missing argument) as one JSON error document on
    stdout when --json is given, like every other error; click's usage text otherwise."""

    def parse_args(self, ctx, args):
        as_json = "--json" in args  # before parsing, which consumes `args`
        try:
            return super().parse_args(ctx, args)
        except Exception as e:  # click's UsageError, which typer vendors under a private name
            if not as_json or getattr(e, "exit_code", None) != 2 or not hasattr(e, "format_message"):
                raise
            _emit_json({"status": "error", "error": {"type": "usage", "message": e.format_message()}})
            raise typer.Exit(2) from None


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


@app.command(cls=_JsonUsageErrors)
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
    workers: Optional[int] = typer.Option(
        None, "--workers", min=1, help="Train data-parallel on N processes: runs `mpiexec -n N` (the mpi extra)."
    ),
    device: Optional[str] = DeviceOpt,
) -> None:
    """Train a model from a config and print the final metrics and parameters."""
    if workers is not None and workers > 1 and not print_config:
        _launch_workers(workers, config, set_, seed, output_dir, overwrite, resume, as_json, progress.value, device)
    _train(
        config, _with_device(set_, device), seed, output_dir, overwrite, resume, as_json, progress.value, print_config
    )


def _launch_workers(workers, config, set_, seed, output_dir, overwrite, resume, as_json, progress, device) -> None:
    """`--workers N` outside an MPI job: this same command under `mpiexec -n N`; exits with its code."""
    from trainkit.errors import TrainkitError
    from trainkit.parallel import launched
    from trainkit.parallel.mpi import launch

    if launched():  # already one of the N ranks
        return
    args = ["train", str(config), *(a for s in set_ or [] for a in ("--set", s)), "--progress", progress]
    args += ["--seed", str(seed)] if seed is not None else []
    args += ["--output-dir", str(output_dir)] if output_dir is not None else []
    args += ["--device", device] if device is not None else []
    args += [f for f, on in (("--overwrite", overwrite), ("--resume", resume), ("--json", as_json)) if on]
    try:
        _load(config, _with_device(set_, device), seed, output_dir)  # a bad config: one message, no N ranks' aborts
        code = launch(workers, args)
    except TrainkitError as err:
        _fail(err, as_json)
    raise typer.Exit(code)


@app.command(cls=_JsonUsageErrors)
def resume(
    run_dir: Path = typer.Argument(..., help="A run directory written by `trainkit train --output-dir`."),
    set_: Optional[list[str]] = SetOpt,
    as_json: bool = JsonOpt,
    progress: ProgressMode = ProgressOpt,
    device: Optional[str] = DeviceOpt,
) -> None:
    """Continue a stopped run from its last checkpoint (same as train RUN_DIR/config.yaml --resume)."""
    _train(run_dir / "config.yaml", _with_device(set_, device), None, run_dir, False, True, as_json, progress.value)


@app.command("compare-optimizers", cls=_JsonUsageErrors)
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
    from trainkit.report.terminal import CompareProgress, choose_mode, comparison_table, make_console

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
        if plot is not None:
            from trainkit.report.plots import check_plot_path

            check_plot_path(plot)  # before any training: a bad path must not cost the whole run
        with CompareProgress(sys.stderr) as progress:
            comp = compare.compare(
                config, optimizer, seeds, grid, target_loss, jobs, output_dir, set_ or [], on_progress=progress.update
            )
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
        test = f"; its test loss {winner['test_loss']:.4g}" if winner.get("test_loss") is not None else ""
        console.print(f"★ lowest {comp.picked_on}: {winner['optimizer']} (lr {winner['lr']:g}){test}", markup=False)
    else:
        console.print(comp.verdict, markup=False)
    for note in comp.notes:
        console.print(f"note: {note}", markup=False)
    for s in comp.lr_search:
        tried = ", ".join(
            f"{e['lr']:g}→{e['status'] if e['score'] is None else format(e['score'], '.4g')}" for e in s["scores"]
        )
        note = f" ({s['note']})" if s.get("note") else ""
        console.print(
            f"lr search {s['optimizer']} on {s['picked_on']}: {tried}; chose {s['chosen_lr']:g}{note}", markup=False
        )
    if plot is not None:
        console.print(f"plot written to {plot}", markup=False)
    if output_dir is not None:
        console.print(f"runs and comparison.csv/json written to {output_dir}/", markup=False)


def _validated_playground(config: Path, loaded, as_json: bool) -> None:
    from trainkit.compare.specs import contenders_for

    cfg = loaded.config
    n = len(contenders_for(loaded, None))  # the optimizers it would compare, checked too
    if as_json:
        _emit_json({"status": "ok", "config": loaded.resolved(), "info": {"kind": "playground", "optimizers": n}})
    else:
        start = ", ".join(f"{v:g}" for v in cfg.problem.start)
        print(
            f"OK {config}: optimizer playground, {cfg.problem.name} from ({start}), {cfg.steps} steps, "
            f"{n} optimizers to compare (trainkit compare-optimizers {config})"
        )


@app.command("lr-find", cls=_JsonUsageErrors)
def lr_find(
    config: Path = typer.Argument(..., help="YAML config file.", show_default=False),
    start_lr: float = typer.Option(1e-7, "--start-lr", help="First rate of the ramp."),
    end_lr: float = typer.Option(10.0, "--end-lr", help="Last rate of the ramp."),
    steps: int = typer.Option(200, "--steps", help="Optimizer steps in the ramp (epochs repeat as needed)."),
    diverge: float = typer.Option(4.0, "--diverge", help="Stop when the smoothed loss passes this × its minimum."),
    suggest: str = typer.Option(
        "minimum", "--suggest", help="minimum: the minimum's rate / 10; steepest: fastest fall."
    ),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write loss against rate (log scale) to this PNG."),
    set_: Optional[list[str]] = SetOpt,
    seed: Optional[int] = SeedOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Learning-rate range test: ramp the rate exponentially from a fresh model and suggest one."""
    from trainkit.errors import TrainkitError
    from trainkit.optim import lr_find as finder

    try:
        finder.check_options(start_lr, end_lr, steps, diverge, suggest)
        if plot is not None:
            from trainkit.report.plots import check_plot_path

            check_plot_path(plot)  # before the ramp: a bad path must not cost the run
        result = finder.lr_find(_load(config, set_ or [], seed), start_lr, end_lr, steps, diverge, suggest)
        if plot is not None:
            from trainkit.report.lr_find import plot_lr_find

            plot_lr_find(result, plot)
    except TrainkitError as err:
        _fail(err, as_json)
    if as_json:
        _emit_json(result.to_dict())
    else:
        from trainkit.report.lr_find import lr_find_report
        from trainkit.report.terminal import choose_mode, make_console

        console = make_console(sys.stdout, plain=choose_mode("auto", sys.stdout) == "plain")
        lr_find_report(result, console)
        if plot is not None:
            console.print(f"plot written to {plot}")
    if result.suggested_lr is None:
        print("error: no rate to suggest: the loss did not fall during the ramp", file=sys.stderr)
        raise typer.Exit(1)


@app.command(cls=_JsonUsageErrors)
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


@app.command(cls=_JsonUsageErrors)
def validate(
    config: Path = typer.Argument(..., help="YAML config file.", show_default=False),
    set_: Optional[list[str]] = SetOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Check a config (and its data) without training: one OK line, or every error."""
    from trainkit import api
    from trainkit.config import load_config
    from trainkit.errors import TrainkitError

    try:
        loaded = load_config(config, set_ or [], kind="any")
        if hasattr(loaded.config, "problem"):  # an optimizer playground: nothing to build
            _validated_playground(config, loaded, as_json)
            return
        if getattr(loaded.config, "sweep", None) is not None:  # every trial's config, as `trainkit sweep` checks them
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
    shaped = any(getattr(layer, "shaped", False) for layer in exp.net.layers)
    if as_json:
        layers = {"input_shape": list(exp.net.in_shape), "layers": exp.net.summary()}  # the table's rows
        _emit_json({"status": "ok", "config": loaded.resolved(), "info": i, **layers})
    else:
        print(f"OK {config}: {summary}")
        if shaped:  # convolutional models: the shape of every layer's output
            from trainkit.nn.network import shape_table

            print(shape_table(exp.net))


IgnoreExtraOpt = typer.Option(
    False, "--ignore-extra", help="Skip columns the training file did not have (default: exit 2 naming them)."
)
ModelOpt = typer.Option(
    "dense",
    "--model",
    metavar="dense|compressed|NAME",
    help="The trained parameters, or a compressed model of the run.",
)


@app.command(cls=_JsonUsageErrors)
def evaluate(
    run_dir: Path = typer.Argument(..., help="A run directory."),
    data: Optional[Path] = typer.Option(None, "--data", help="Evaluate on this file instead of the run's test split."),
    ignore_extra: bool = IgnoreExtraOpt,
    model: str = ModelOpt,
    as_json: bool = JsonOpt,
    device: str = typer.Option("cpu", "--device", metavar="cpu|cuda|cuda:N", help="Compute on this device."),
) -> None:
    """Metrics of a trained run on its test split (or a given file)."""
    from trainkit.errors import TrainkitError
    from trainkit.report.terminal import choose_mode, make_console, metrics_table
    from trainkit.runs import inference

    try:
        out = inference.evaluate(run_dir, str(data) if data else None, ignore_extra, model, device)
    except TrainkitError as err:
        _fail(err, as_json)
    if as_json:
        _emit_json({"status": "ok", **out})
        return
    console = make_console(sys.stdout, plain=choose_mode("auto", sys.stdout) == "plain")
    which = "" if model == "dense" else f", {model} model"
    console.print(f"{out['split']} split of {run_dir}" if data is None else f"{data}", f"({out['n']} samples{which})")
    console.print(metrics_table(out["metrics"]))


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A run directory."),
    data: Path = typer.Option(..., "--data", help="CSV/NPZ like the training data, or (image runs) images."),
    output: Optional[Path] = typer.Option(
        None, "--output", help="Write predictions to this CSV, outside the run directory (default: stdout)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output file."),
    ignore_extra: bool = IgnoreExtraOpt,
    model: str = ModelOpt,
    device: str = typer.Option("cpu", "--device", metavar="cpu|cuda|cuda:N", help="Compute on this device."),
) -> None:
    """Predict with a trained run: labels (and class probabilities) or values, as CSV."""
    from trainkit.errors import TrainkitError
    from trainkit.runs import inference

    try:
        if output is not None:
            inference.check_output(run_dir, data, output, overwrite)
        header, rows = inference.predict(run_dir, str(data), ignore_extra, model, device)
    except TrainkitError as err:
        _fail(err, False)
    text = inference.to_csv(header, rows)
    if output is None:
        sys.stdout.write(text)
    else:
        from trainkit.runs.rundir import atomic_write

        atomic_write(output, text.encode())
        print(f"wrote {len(rows)} predictions to {output}", file=sys.stderr)


@app.command(cls=_JsonUsageErrors)
def compress(
    run_dir: Path = typer.Argument(..., metavar="RUN", help="A run directory with a checkpoint."),
    sparsity: Optional[float] = typer.Option(
        None, "--sparsity", help="Prune this fraction of the linear/conv weights by magnitude, in [0, 1)."
    ),
    scope: str = typer.Option("global", "--scope", help="global: one threshold over all weights; layer: per tensor."),
    finetune: int = typer.Option(
        0, "--finetune", "--fine-tune-epochs", metavar="N", help="Fine-tune N epochs with the mask fixed."
    ),
    int8: bool = typer.Option(False, "--int8", help="Quantize the weights to int8 (symmetric, per output channel)."),
    quantize: Optional[str] = typer.Option(None, "--quantize", metavar="int8", help="The same as --int8."),
    per_tensor: bool = typer.Option(False, "--per-tensor", help="With --int8: one scale per tensor."),
    name: str = typer.Option("compressed", "--name", help="Write RUN/model.NAME.npz."),
    force: bool = typer.Option(False, "--force", help="Replace an existing compressed model of that name."),
    as_json: bool = JsonOpt,
) -> None:
    """Prune and/or int8-quantize a trained run into a small model file; metrics before and after."""
    from trainkit.compress import command
    from trainkit.errors import ConfigError, TrainkitError

    def on_epoch(row: dict, epochs: int) -> None:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k.endswith(("loss", "accuracy")))
        print(f"fine-tune epoch {row['epoch']}/{epochs}: {shown}", file=sys.stderr, flush=True)

    try:
        if quantize is not None:  # DESIGN.md's spelling of --int8
            if quantize != "int8":
                raise ConfigError.one("--quantize", f"unknown quantization {quantize!r}", "--quantize int8 (or --int8)")
            int8 = True
        done = command.compress(run_dir, sparsity, scope, finetune, int8, per_tensor, name, force, on_epoch)
    except TrainkitError as err:
        _fail(err, as_json)
    if as_json:
        _emit_json(done.to_dict())
        return
    from trainkit.report.compress import render_compressed

    render_compressed(done, _plain_console())


@app.command("list")
def list_(
    kind: Optional[str] = typer.Argument(
        None,
        help="datasets, augmentations, models, layers, losses, optimizers, schedules, "
        "sections (seed, train, regularization, output, compare), problems (playground) or devices.",
    ),
) -> None:
    """List the registered components and the config's other keys, with their defaults."""
    from trainkit import registry

    kinds = (*registry.KINDS, "sections", "problems")
    if kind in ("devices", "device"):
        return _list_devices()
    if kind is not None:
        k = kind if kind in kinds else kind + "s"
        if k not in kinds:
            import difflib

            close = difflib.get_close_matches(kind, kinds, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            print(f"error: unknown kind {kind!r}{hint}; choose one of: {', '.join(kinds)}", file=sys.stderr)
            raise typer.Exit(2)
        kinds = (k,)
    from rich.markup import escape
    from rich.table import Table

    from trainkit.report.terminal import choose_mode, make_console

    def default(f) -> str:
        d = "required" if f.is_required() else f.get_default(call_default_factory=True)
        return str(d.model_dump(by_alias=True) if hasattr(d, "model_dump") else d)

    def components(title: str, entries) -> Table:
        table = Table(title=title, title_justify="left")
        for col in ("name", "description", "parameters (default)"):
            table.add_column(col, style="bold" if col == "name" else None)
        for e in entries:
            params = [f"{f.alias or n}={default(f)}" for n, f in e.schema.model_fields.items() if n != "name"]
            # escape: rich reads [...] in text as markup and would drop it
            table.add_row(e.name, escape(e.description), escape(", ".join(params)))
        return table

    console = make_console(sys.stdout, plain=choose_mode("auto", sys.stdout) == "plain")
    for k in kinds:
        if k == "sections":
            from trainkit.config.errors import describe
            from trainkit.config.loader import settings

            table = Table(title="sections (keys outside the components)", title_justify="left")
            for col in ("key", "default", "allowed", "description"):
                table.add_column(col, style="bold" if col == "key" else None)
            for key, f in settings():
                allowed = describe(f.annotation, f.metadata)
                table.add_row(key, escape(default(f)), escape(allowed), escape(f.description or ""))
        elif k == "problems":
            from trainkit.compare.playground import PROBLEMS

            problems = [registry.Entry(k, p.model_fields["name"].default, p, p) for p in PROBLEMS]
            table = components("problems (playground: `problem:` instead of data and model)", problems)
        else:
            table = components(k, registry.entries(k))
        console.print(table)


def _list_devices() -> None:
    """`trainkit list devices`: cpu, each GPU CuPy sees, and why there is none."""
    from rich.markup import escape
    from rich.table import Table

    from trainkit.backend.device import INSTALL, list_devices
    from trainkit.report.terminal import choose_mode, make_console

    rows, why = list_devices()
    table = Table(title="devices (train.device, --device)", title_justify="left")
    for col in ("device", "name", "memory"):
        table.add_column(col, style="bold" if col == "device" else None)
    for r in rows:
        table.add_row(r["device"], r["name"], "" if r["memory_gb"] is None else f"{r['memory_gb']} GiB")
    console = make_console(sys.stdout, plain=choose_mode("auto", sys.stdout) == "plain")
    console.print(table)
    if why:
        console.print(escape(f"no cuda device: {why}" + ("" if "no GPU" in why else f"; install: {INSTALL}")))


def _plain_console():
    from trainkit.report.terminal import choose_mode, make_console

    console = make_console(sys.stdout, plain=choose_mode("auto", sys.stdout) == "plain")
    if not console.is_terminal:
        console.width = 1000  # piped: one line per row, never wrapped (grep, awk)
    return console


@app.command(cls=_JsonUsageErrors)
def runs(
    dirs: Optional[list[Path]] = typer.Argument(
        None, metavar="DIR", help="Folders of run dirs (searched recursively). Default: runs/"
    ),
    metric: Optional[str] = typer.Option(
        None,
        "--metric",
        help="The metric whose best and final value are shown (default: val_loss, else train_loss).",
    ),
    sort: str = typer.Option(
        "name", "--sort", help="name, model, optimizer, status, epochs, best, final, wall, when; -KEY descends."
    ),
    filter_: Optional[list[str]] = typer.Option(
        None,
        "--filter",
        metavar="KEY=VALUE",
        help="Keep runs with KEY=VALUE[,VALUE] (status, model, optimizer, name, epochs). Repeatable.",
    ),
    as_json: bool = JsonOpt,
) -> None:
    """A table of the run dirs under DIR: how each ended, its epochs, best and final metric, time."""
    from trainkit.errors import TrainkitError
    from trainkit.runs import views

    try:
        chosen, rows = views.table(dirs or [Path("runs")], metric, filter_ or [], sort)
    except TrainkitError as err:
        _fail(err, as_json)
    if as_json:
        _emit_json({"status": "ok", "metric": chosen, "runs": [r.to_dict(chosen) for r in rows]})
        return
    from trainkit.report.views import damaged_notes, runs_table

    console = _plain_console()
    console.print(runs_table(rows, chosen), soft_wrap=True)
    for note in damaged_notes(rows):
        console.print(f"damaged: {note}", markup=False)


@app.command()
def plot(
    run_dirs: list[Path] = typer.Argument(
        ..., metavar="RUN", help="Run dirs, or folders of them (a comparison, a sweep)."
    ),
    metric: Optional[str] = typer.Option(
        None,
        "--metric",
        help="Comma-separated metrics, e.g. val_loss,train_loss (default: val_loss, else train_loss).",
    ),
    output: Optional[Path] = typer.Option(None, "--output", help="Write the curves to this image (.png, .svg, .pdf)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output file."),
    as_json: bool = JsonOpt,
) -> None:
    """Curves of one or many runs on shared axes, labelled by what differs between them."""
    from trainkit.errors import TrainkitError
    from trainkit.runs import views

    try:
        if output is not None:
            views.check_plot_output(output, overwrite)
            from trainkit.report.plots import require_matplotlib

            require_matplotlib()
        metrics = [m.strip() for m in metric.split(",") if m.strip()] if metric else None
        curves, metrics = views.curves(run_dirs, metrics)
    except TrainkitError as err:
        _fail(err, as_json)
    from trainkit.report.views import plot_runs, sparkline_table

    if output is None and not as_json:
        _plain_console().print(sparkline_table(curves, metrics))
        return
    if output is not None:
        plot_runs(curves, metrics, output)
        print(f"plot of {len(curves)} run{'s' if len(curves) != 1 else ''} written to {output}", file=sys.stderr)
    if as_json:  # the curves themselves, for scripts
        runs_doc = [
            {"label": c["label"], "name": c["name"], "path": c["path"], "epoch": [r.get("epoch") for r in c["rows"]]}
            | {m: [r.get(m) for r in c["rows"]] for m in metrics}
            for c in curves
        ]
        _emit_json({"status": "ok", "metrics": metrics, "output": output and str(output), "runs": runs_doc})


@app.command(cls=_JsonUsageErrors)
def diff(
    run_a: Path = typer.Argument(..., help="A run dir."),
    run_b: Path = typer.Argument(..., help="Another run dir."),
    as_json: bool = JsonOpt,
) -> None:
    """The config keys that differ between two runs (defaults filled in), then their final metrics."""
    from trainkit.errors import TrainkitError
    from trainkit.runs import views

    try:
        doc = views.diff(run_a, run_b)
    except TrainkitError as err:
        _fail(err, as_json)
    if as_json:
        _emit_json({"status": "ok", **doc})
        return
    from trainkit.report.views import diff_tables

    console = _plain_console()
    if not doc["config"]:
        console.print("the configs are the same (output.dir aside)")
    for table in diff_tables(doc)[0 if doc["config"] else 1 :]:
        console.print(table)


class ExportFormat(str, Enum):
    tensorboard = "tensorboard"


@app.command(cls=_JsonUsageErrors)
def export(
    run_dirs: list[Path] = typer.Argument(..., metavar="RUN", help="Run dirs, or folders of them."),
    format_: ExportFormat = typer.Option(..., "--format", help="tensorboard: one event file in each run dir."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an event file an earlier export wrote."),
    as_json: bool = JsonOpt,
) -> None:
    """Export runs for other tools: `--format tensorboard`, then `tensorboard --logdir DIR`."""
    from trainkit.errors import TrainkitError
    from trainkit.runs import export as exporter
    from trainkit.runs.views import run_dirs as expand

    try:
        exporter.tensorboardx()
        done = [exporter.export_tensorboard(p, overwrite) for _, p in expand(run_dirs)]
    except TrainkitError as err:
        _fail(err, as_json)
    if as_json:
        _emit_json({"status": "ok", "exported": done})
        return
    for d in done:
        print(f"{d['run']}: {d['scalars']} scalars over {d['epochs']} epochs -> {Path(d['event_file']).name}")


def _interrupted(signum, frame) -> None:
    # Ctrl-C outside the training loop (loading, building, rendering): stop at once with the
    # documented code instead of click's "Aborted!" and exit 1. Every file write is atomic,
    # so nothing is left half-written. During training, api.train handles SIGINT itself.
    print("\ninterrupted", file=sys.stderr)
    if "--json" in sys.argv[1:] and not _emitted:  # scripts still get their one JSON document
        doc = '{"status": "interrupted", "error": {"type": "interrupted", "message": "stopped by SIGINT"}}\n'
        with contextlib.suppress(OSError):
            sys.stdout.flush()
            os.write(sys.stdout.fileno(), doc.encode())
    os._exit(130)


def main() -> None:
    import signal

    from trainkit.parallel import launched

    signal.signal(signal.SIGINT, _interrupted)
    if not launched():
        app()
        return
    from trainkit.parallel.mpi import run_cli

    run_cli(app)  # under mpiexec: rank 0 prints, a failing rank stops the job


if __name__ == "__main__":
    main()
