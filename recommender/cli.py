"""The `tdr` command line: the stable CLI contract of DESIGN.md, each command a thin call into a stage."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from data.workspace import Workspace, write_csv_atomic, write_parquet_atomic
from recommender.config import Settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="TDR — 教师发展推荐引擎 (Teacher Development Recommender)",
)
console = Console()
err = Console(stderr=True)

WorkspaceOpt = Annotated[Path, typer.Option("--workspace", "-w", help="workspace folder")]


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def write_table_file(df: pd.DataFrame, out: Path) -> None:
    """Write a table as Parquet, or CSV (UTF-8 with BOM, for Excel) when the name ends in .csv."""
    if out.suffix.lower() == ".csv":
        write_csv_atomic(df, out)
    else:
        write_parquet_atomic(df, out)


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
def ingest(
    src: Annotated[Path, typer.Argument(help="folder of contract files")], workspace: WorkspaceOpt
) -> None:
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


def _settings(policy: str | None = None) -> Settings:
    s = Settings()
    return replace(s, policy=policy) if policy else s


@app.command()
def train(
    workspace: WorkspaceOpt,
    policy: Annotated[
        str | None, typer.Option(help="policy name (default, henan_2021, jiangxi_2022) or file")
    ] = None,
) -> None:
    """Portraits, encoder index, IRT and ranker → a new artifact bundle."""
    from recommender.train import train as run

    with console.status("训练中 training…") as status:
        bundle = run(
            Workspace.open(workspace), _settings(policy), step=lambda s: status.update(f"训练中：{s}")
        )
    console.print(f"bundle [bold]{bundle.name}[/bold] → {bundle}")


@app.command()
def score(
    workspace: WorkspaceOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder")],
    engine: Annotated[str, typer.Option(help="local | ray")] = "local",
    top_k: Annotated[int, typer.Option("--top-k")] = 20,
    block_size: Annotated[int, typer.Option("--block-size")] = 2000,
) -> None:
    """Score every teacher: OUT/recommendations.parquet and OUT/menus.parquet."""
    from recommender.batch import score_local

    if engine != "local":
        err.print(f"[red]unknown engine {engine!r}[/red]; available: local")
        raise typer.Exit(2)
    with Progress(
        TextColumn("评分 scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console,
    ) as bar:  # fmt: skip
        task = bar.add_task("score", total=None)
        rec, menus = score_local(
            Workspace.open(workspace),
            out,
            top_k,
            block_size,
            lambda d, n: bar.update(task, completed=d, total=n),
        )
    console.print(f"recommendations → {rec}\nmenus → {menus}")


@app.command()
def portraits(workspace: WorkspaceOpt, out: Annotated[Path, typer.Option("--out", "-o")]) -> None:
    """Export portraits, long format: teacher_id, competency, estimate, std_error, source."""
    ws = Workspace.open(workspace)
    comp = pd.read_parquet(ws.portraits_dir / "competencies.parquet")
    cols = ["teacher_id", "competency", "estimate", "std_error", "source"]
    write_table_file(comp[cols], out)
    console.print(f"{len(comp)} rows → {out}")


@app.command()
def cohort(
    workspace: WorkspaceOpt,
    by: Annotated[str, typer.Option("--by", help="county | school_id | stage | subject | city | a,b")],
    out: Annotated[Path, typer.Option("--out", "-o")],
) -> None:
    """Cohort portraits by a grouping, written as a long table (suppressing groups under 5 teachers)."""
    from features.cohort import cohort_portrait, cohort_summary_frame

    ws = Workspace.open(workspace)
    rows = pd.read_parquet(ws.portraits_dir / "teachers.parquet")
    comp = pd.read_parquet(ws.portraits_dir / "competencies.parquet")
    keys = [k.strip() for k in by.split(",")]
    missing = [k for k in keys if k not in rows.columns]
    if missing:
        err.print(f"[red]cannot group by {missing}[/red]; columns: {', '.join(rows.columns[:12])}…")
        raise typer.Exit(2)
    taxonomy = ws.read_table("taxonomy") if ws.has_table("taxonomy") else None
    frame = cohort_summary_frame(cohort_portrait(rows, comp, keys, taxonomy=taxonomy))
    write_table_file(frame, out)
    console.print(f"{frame['group'].nunique() if 'group' in frame else len(frame)} groups → {out}")


@app.command()
def recommend(teacher_id: Annotated[str, typer.Argument()], workspace: WorkspaceOpt) -> None:
    """One teacher's portrait summary and menu, human-readable."""
    from recommender.service import Engine

    engine = Engine.load(Workspace.open(workspace))
    try:
        view = engine.portrait(teacher_id)
        plan = engine.menu(teacher_id)
    except KeyError as e:
        err.print(f"[red]未找到教师 {teacher_id}[/red]")
        raise typer.Exit(1) from e
    console.print(f"[bold]教师 {teacher_id}[/bold]  {view.summary}")
    console.print(view.need_statement)
    table = Table("课程", "学时", "形式", "推荐理由")
    for item in plan.items:
        table.add_row(f"{item.course_id} {item.title}", f"{item.hours:g}", item.format_zh, item.reason)
    console.print(table)
    console.print(
        f"合计 {plan.total_hours:g} 学时，实践类 {plan.practical_share:.0%}"
        + (f"；{plan.message}" if plan.message else "")
    )


@app.command("search")
def search_cmd(
    query: Annotated[str, typer.Argument()],
    workspace: WorkspaceOpt,
    top_k: Annotated[int, typer.Option("--top-k")] = 10,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Hybrid (dense + lexical) course search."""
    from models.encoder import Encoder
    from recommender.artifacts import load_current
    from recommender.search import search

    ws = Workspace.open(workspace)
    s = _settings()
    hits = search(
        load_current(ws.bundles_dir), Encoder(s.encoder_model, cache_dir=s.model_cache), query, top_k
    )
    if as_json:
        for rec in hits.to_dict("records"):
            typer.echo(json.dumps({**rec, "score": round(float(rec["score"]), 6)}, ensure_ascii=False))
        return
    table = Table("课程编号", "课程名称", "得分")
    for rec in hits.itertuples():
        table.add_row(str(rec.course_id), str(rec.title), f"{rec.score:.3f}")
    console.print(table)
