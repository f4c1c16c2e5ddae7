"""The `trainkit` command: parse arguments, call the Python API, render the result.

No training logic lives here. Heavy imports (numpy, pydantic, the engine) happen inside the
commands so that `trainkit --help` starts fast.

Exit codes: 0 finished, 1 diverged, 2 bad usage / config / data, 130 SIGINT, 143 SIGTERM.
"""

from __future__ import annotations

import json
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


class ProgressMode(str, Enum):
    auto = "auto"
    bar = "bar"
    plain = "plain"
    none = "none"


def _emit_json(doc: dict) -> None:
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    sys.stdout.flush()


def _fail(err, as_json: bool) -> None:
    """Print a user error (never a traceback) and exit with its code."""
    if as_json:
        _emit_json({"status": "error", "error": err.to_dict()})
    else:
        print(f"error: {err}", file=sys.stderr)
    raise typer.Exit(err.exit_code)


def _load(config: Path, overrides: list[str], seed: Optional[int], output_dir: Optional[Path]):
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
    help="Override a config key: --set optimizer.lr=0.01 (value parsed as YAML). Repeatable.",
    metavar="KEY=VALUE",
)
SeedOpt = typer.Option(None, "--seed", help="Override the config's seed.")
JsonOpt = typer.Option(False, "--json", help="Write exactly one JSON document to stdout (human output goes to stderr).")
OutOpt = typer.Option(
    None,
    "--output-dir",
    "-o",
    help="Write the run directory here (config, metrics, checkpoint, summary).",
)


@app.command()
def train(
    config: Path = typer.Argument(..., help="YAML config file.", show_default=False),
    set_: Optional[list[str]] = SetOpt,
    seed: Optional[int] = SeedOpt,
    output_dir: Optional[Path] = OutOpt,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run directory."),
    as_json: bool = JsonOpt,
    progress: ProgressMode = typer.Option(
        ProgressMode.auto, "--progress", help="auto: a bar on terminals, plain lines elsewhere."
    ),
    print_config: bool = typer.Option(False, "--print-config", help="Print the fully resolved config and exit."),
) -> None:
    """Train a model from a config and print the final metrics and parameters."""
    from trainkit import api
    from trainkit.config import dump_yaml
    from trainkit.errors import EXIT_DIVERGED, EXIT_SIGINT, EXIT_SIGTERM, TrainkitError
    from trainkit.report import Progress, choose_mode, make_console, render_result

    try:
        loaded = _load(config, set_ or [], seed, output_dir)
        if print_config:
            sys.stdout.write(dump_yaml(loaded.resolved()))
            return
        out = sys.stderr if as_json else sys.stdout
        mode = progress.value
        if as_json and mode == "auto":
            mode = "none"
        mode = choose_mode(mode, out)
        console = make_console(out, plain=mode != "bar")
        run_dir = None
        cfg = loaded.config
        if cfg.output.dir:
            from trainkit.rundir import RunDir

            run_dir = RunDir(
                cfg.output.dir,
                overwrite=overwrite or cfg.output.overwrite,
                checkpoint_every=cfg.train.checkpoint_every,
            )
        with Progress(mode, out, cfg.train.epochs, cfg.train.log_every) as prog:
            result = api.train(loaded, on_epoch=prog.update, on_start=prog.start, run_dir=run_dir)
    except TrainkitError as err:
        _fail(err, as_json)
    if as_json:
        _emit_json(result.to_dict())
    if not as_json or mode != "none":
        render_result(result, console)
        if run_dir is not None:
            console.print(f"run saved to {run_dir.path}/")
    if result.status == "diverged":
        raise typer.Exit(EXIT_DIVERGED)
    if result.status == "interrupted":
        if run_dir is not None:
            print(
                f"resume with: trainkit train {run_dir.path / 'config.yaml'} --resume",
                file=sys.stderr,
            )
        raise typer.Exit(EXIT_SIGTERM if "SIGTERM" in result.stop_reason else EXIT_SIGINT)


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
        loaded = _load(config, set_ or [], None, None)
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


@app.command("list")
def list_(
    kind: Optional[str] = typer.Argument(None, help="datasets, models, layers, losses, optimizers or schedules."),
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
            print(
                f"error: unknown kind {kind!r}{hint}; choose one of: {', '.join(kinds)}",
                file=sys.stderr,
            )
            raise typer.Exit(2)
        kinds = (k,)
    from rich.table import Table

    from trainkit.report import choose_mode, make_console

    console = make_console(sys.stdout, plain=choose_mode("auto", sys.stdout) == "plain")
    for k in kinds:
        table = Table(title=k, title_justify="left", show_lines=False)
        table.add_column("name", style="bold")
        table.add_column("description")
        table.add_column("parameters (default)")
        for e in registry.entries(k):
            params = []
            for fname, f in e.schema.model_fields.items():
                if fname == "name":
                    continue
                default = "required" if f.is_required() else (f.get_default(call_default_factory=True))
                if hasattr(default, "model_dump"):
                    default = default.model_dump(by_alias=True)
                params.append(f"{f.alias or fname}={default}")
            table.add_row(e.name, e.description, ", ".join(params))
        console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
