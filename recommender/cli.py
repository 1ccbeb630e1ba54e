"""The `tdr` command line: the stable CLI contract of DESIGN.md, each command a thin call into a stage."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, help="TDR — 教师发展推荐引擎 (Teacher Development Recommender)")
console = Console()
err = Console(stderr=True)

WorkspaceOpt = Annotated[Path, typer.Option("--workspace", "-w", help="workspace folder")]


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@app.command()
def generate(
    out: Annotated[Path, typer.Argument(help="folder to write the synthetic province into")],
    teachers: Annotated[int, typer.Option("--teachers", "-n")] = 5000,
    seed: Annotated[int, typer.Option("--seed", "-s")] = 0,
) -> None:
    """Write a synthetic province in the contract format (ground truth under DIR/_truth/)."""
    from data.synthetic import generate as run

    summary = run(out, n_teachers=teachers, seed=seed)
    console.print(summary)


@app.command()
def ingest(src: Annotated[Path, typer.Argument(help="folder of contract files")], workspace: WorkspaceOpt) -> None:
    """Validate and load contract files; print accepted / rejected per table."""
    from data.ingest import UnreadableFileError
    from data.ingest import ingest as run
    from data.workspace import Workspace

    try:
        report = run(src, Workspace.open(workspace))
    except UnreadableFileError as e:
        err.print(f"[red]cannot read[/red] {e}")
        raise typer.Exit(2) from e
    console.print(report.to_rich_table())
