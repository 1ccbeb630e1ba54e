"""The `tdr` command line: the stable CLI contract of DESIGN.md, each command a thin call into a stage.

It sits above every layer (data < models < features < recommender < api): it may import any of them and
nothing imports it. What the terminal shows beyond a sentence (rich tables) is drawn in `tdr.render`.
"""

from __future__ import annotations

import json
import logging
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import pandas as pd
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from data.synthetic import DEFAULT_WORLD, World
from data.workspace import Workspace, write_csv_atomic, write_parquet_atomic
from recommender.config import Settings, SettingsError
from tdr.render import generation_table, ingest_table

if TYPE_CHECKING:
    from recommender.portraits import ExecutorFactory

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="TDR — 教师发展推荐引擎 (Teacher Development Recommender)",
)
console = Console()
err = Console(stderr=True)
log = logging.getLogger("tdr")

S = TypeVar("S", bound=Settings)
WorkspaceOpt = Annotated[Path, typer.Option("--workspace", "-w", help="workspace folder")]


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def write_table_file(df: pd.DataFrame, out: Path) -> None:
    """Write a table as Parquet, or CSV (UTF-8 with BOM, for Excel) when the name ends in .csv, or a one-sheet
    workbook when it ends in .xlsx."""
    if out.suffix.lower() == ".csv":
        write_csv_atomic(df, out)
    elif out.suffix.lower() == ".xlsx":
        from openpyxl import Workbook

        from data.workspace import atomic_write
        from recommender.workbook import append_sheet

        wb = Workbook(write_only=True)
        rows = df.astype(object).where(df.notna(), None).itertuples(index=False)
        append_sheet(wb, "data", [str(c) for c in df.columns], rows)
        atomic_write(out, wb.save)
    else:
        write_parquet_atomic(df, out)


@app.command()
def generate(
    out: Annotated[Path, typer.Argument(help="folder to write the synthetic province into")],
    teachers: Annotated[int, typer.Option("--teachers", "-n")] = 5000,
    seed: Annotated[int, typer.Option("--seed", "-s")] = 0,
    world: Annotated[World, typer.Option("--world", help="what truly helps a teacher")] = DEFAULT_WORLD,
) -> None:
    """Write a synthetic province in the contract format (ground truth under DIR/_truth/)."""
    from data.synthetic import generate as run

    console.print(generation_table(run(out, n_teachers=teachers, seed=seed, world=world)))


@app.command()
def ingest(
    src: Annotated[Path, typer.Argument(help="folder of contract files")],
    workspace: WorkspaceOpt,
    replace: Annotated[
        bool, typer.Option("--replace", help="let a table shrink by more than TDR_INGEST_MAX_SHRINK")
    ] = False,
    append: Annotated[
        bool, typer.Option("--append", help="merge a day's new or changed rows into the tables by key")
    ] = False,
) -> None:
    """Validate and load contract files as a new workspace version; print accepted / rejected per table.

    Exit 2: a file cannot be read; exit 3: refused (a file lacks a required column or has no data row, or a
    table would shrink too much without --replace). Either way the workspace is left as it was."""
    from data.ingest import IngestRefused, UnreadableFileError
    from data.ingest import ingest as run
    from data.workspace import Workspace

    try:
        report = run(
            src,
            Workspace.open(workspace),
            replace=replace,
            append=append,
            max_shrink=_from_env(Settings).ingest_max_shrink,
        )
    except UnreadableFileError as e:
        err.print(f"[red]无法读取文件[/red] {e}")
        raise typer.Exit(2) from e
    except IngestRefused as e:
        err.print("[red]导入已拒绝，工作区未做任何更改：[/red]")
        for problem in e.problems:
            err.print(f"  • {problem}")
        raise typer.Exit(3) from e
    console.print(ingest_table(report))


def _train_shown(ws: Workspace, settings: Settings, executor: ExecutorFactory | None = None) -> Path:
    """`recommender.train.train` with its steps shown, and a bar while course texts go through the encoder
    (a first train of a large catalogue; a cached one shows none)."""
    from recommender.train import train as run

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), console=console, transient=True,
    ) as bar:  # fmt: skip
        steps = bar.add_task("训练中 training…", total=None)
        encoding = bar.add_task("课程编码 encoding courses", total=None, visible=False)

        def report(step: str) -> None:
            bar.update(steps, description=f"训练中：{step}")
            log.info("train step: %s", step)

        def encoded(done: int, total: int) -> None:
            bar.update(encoding, completed=done, total=total, visible=done < total)

        return run(ws, settings, step=report, progress=encoded, executor=executor)


def _from_env(kind: type[S], **overrides: object) -> S:
    """Settings built here at the edge from the environment and passed down; a TDR_* variable whose value does
    not parse stops the command with the variable's name."""
    try:
        return kind.from_env(**overrides)
    except SettingsError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from e


def _settings(policy: str | None = None) -> Settings:
    """The engine's settings, ``policy`` overriding TDR_POLICY."""
    return _from_env(Settings, **({"policy": policy} if policy else {}))


@app.command()
def train(
    workspace: WorkspaceOpt,
    policy: Annotated[
        str | None, typer.Option(help="policy name (default, henan_2021, jiangxi_2022) or file")
    ] = None,
    incremental: Annotated[
        bool, typer.Option("--incremental", help="refresh only teachers whose inputs changed")
    ] = False,
    engine: Annotated[str, typer.Option(help="portrait workers: local | ray")] = "local",
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster address (e.g. auto)")] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="CPUs of a local Ray (the local engine uses every core)")
    ] = None,
) -> None:
    """Portraits, encoder index, IRT and ranker → a new artifact bundle."""
    from models.bundle import BundleBusyError

    if engine not in ("local", "ray"):
        err.print(f"[red]unknown engine {engine!r}[/red]; available: local, ray")
        raise typer.Exit(2)
    # one version of the tables, whatever ingest runs meanwhile
    ws, s = Workspace.open(workspace).pinned(), _settings(policy)
    try:
        bundle = _train_command(ws, s, incremental, engine, address, workers)
    except BundleBusyError as e:
        err.print(f"[red]已有训练在此工作区运行[/red]（{e}）")
        raise typer.Exit(2) from e
    console.print(f"bundle [bold]{bundle.name}[/bold] → {bundle}")


def _train_command(
    ws: Workspace, s: Settings, incremental: bool, engine: str, address: str | None, workers: int | None
) -> Path:
    from recommender.incremental import train_incremental

    with ExitStack() as stack:
        executor = None
        if engine == "ray":
            from recommender.ray_engine import ray_executors

            executor = stack.enter_context(ray_executors(address, workers))
        if not incremental:
            bundle = _train_shown(ws, s, executor)
        else:
            result = train_incremental(ws, s, full_train=lambda: _train_shown(ws, s, executor))
            bundle = result.bundle
            if result.full:
                why = _FULL_REASON_ZH.get(
                    result.reason, f"能力估计分布发生漂移，PSI = {result.estimate_psi:.3f}"
                )
                console.print(f"已完整训练（{why}）")
            else:
                console.print(
                    f"增量更新：{result.changed} 位教师画像已刷新，{result.removed} 位已移除；"
                    f"能力估计分布稳定性指数 PSI = {result.estimate_psi:.4f}"
                )
    return bundle


# why `tdr train --incremental` trained in full (recommender.incremental.train_incremental's reasons)
_FULL_REASON_ZH = {
    "no earlier build": "此前没有可增量更新的画像",
    "courses, items or taxonomy changed": "课程、题目或能力框架有变化",
}


@app.command()
def score(
    workspace: WorkspaceOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder")],
    engine: Annotated[str, typer.Option(help="local | ray")] = "local",
    top_k: Annotated[int, typer.Option("--top-k")] = 20,
    block_size: Annotated[int, typer.Option("--block-size")] = 2000,
    address: Annotated[
        str | None, typer.Option("--address", help="Ray cluster address (e.g. auto); default a local Ray")
    ] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="worker processes / Ray actors")] = None,
    changed: Annotated[
        bool,
        typer.Option("--changed", help="rescore only teachers whose portraits changed since OUT was scored"),
    ] = False,
) -> None:
    """Score every teacher: OUT/recommendations.parquet and OUT/menus.parquet."""
    from recommender.artifacts import paired
    from recommender.batch import score_local
    from recommender.incremental import can_score_changed, score_changed, stamp_scored

    if engine not in ("local", "ray"):
        err.print(f"[red]unknown engine {engine!r}[/red]; available: local, ray")
        raise typer.Exit(2)
    with Progress(
        TextColumn("评分 scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console,
    ) as bar:  # fmt: skip
        task = bar.add_task("score", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        # one version of the tables; one bundle, and the portraits it holds
        ws, bundle = paired(Workspace.open(workspace).pinned())
        if changed and can_score_changed(ws, out, bundle):
            n = score_changed(ws, out, block_size, progress, workers, bundle)
            console.print(f"已重新评分画像有变化的 {n} 位教师，结果已替换入 {out}")
            return
        if changed:
            console.print("输出目录中没有同一模型的完整评分结果，改为全部评分")
        if engine == "ray":
            from recommender.ray_engine import score_ray

            rec, menus = score_ray(ws, out, top_k, block_size, address, workers or 2, progress, bundle)
        else:
            rec, menus = score_local(ws, out, top_k, block_size, progress, workers, bundle)
        stamp_scored(ws, out)
    console.print(f"recommendations → {rec}\nmenus → {menus}")


@app.command()
def portraits(
    workspace: WorkspaceOpt,
    out: Annotated[Path, typer.Option("--out", "-o")],
    history: Annotated[
        bool, typer.Option("--history", help="the portrait as of each assessment date (adds a date column)")
    ] = False,
) -> None:
    """Export portraits, long format: teacher_id, competency, estimate, std_error, source."""
    ws = Workspace.open(workspace)
    if history:
        from recommender.effects import growth_of

        comp = growth_of(ws).history
        cols = ["teacher_id", "date", "competency", "estimate", "std_error", "source"]
    else:
        comp = pd.read_parquet(ws.portraits_dir / "competencies.parquet")
        cols = ["teacher_id", "competency", "estimate", "std_error", "source"]
    write_table_file(comp[cols], out)
    console.print(f"{len(comp)} rows → {out}")


@app.command()
def effects(
    workspace: WorkspaceOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help=".parquet, .csv or .xlsx")],
    by: Annotated[
        str | None, typer.Option("--by", help="county | school | stage | city: each cohort's own effects")
    ] = None,
) -> None:
    """Each course's and project's measured effect on the competencies it teaches (训后成效), with 90 % intervals."""
    from recommender.effects import growth_of, province_effects, unit_effects

    ws = Workspace.open(workspace)
    try:
        with console.status("估计训后成效 estimating effects…"):
            growth = growth_of(ws)
            # the province's own effects were estimated once with the growth (WS/effects/units.parquet)
            table = province_effects(ws, growth) if by is None else unit_effects(growth, by=by)
    except ValueError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from e
    write_table_file(table, out)
    known = int(table["known"].sum())
    console.print(f"{len(table)} rows ({known} with an estimate, {len(table) - known} 证据不足) → {out}")


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
    aliases = {"school": "school_id"}
    keys = [aliases.get(k.strip(), k.strip()) for k in by.split(",")]
    missing = [k for k in keys if k not in rows.columns]
    if missing:
        err.print(f"[red]cannot group by {missing}[/red]; columns: {', '.join(rows.columns[:12])}…")
        raise typer.Exit(2)
    taxonomy = ws.read_table("taxonomy") if ws.has_table("taxonomy") else None
    frame = cohort_summary_frame(cohort_portrait(rows, comp, keys, taxonomy=taxonomy))
    write_table_file(frame, out)
    console.print(f"{frame['group'].nunique() if 'group' in frame else len(frame)} groups → {out}")


@app.command()
def recommend(
    teacher_id: Annotated[str, typer.Argument()],
    workspace: WorkspaceOpt,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One teacher's portrait summary and menu, human-readable."""
    from data.schema import FORMAT, STAGE
    from recommender.service import Engine

    engine = Engine.load(Workspace.open(workspace), config=_settings())
    view, plan = engine.portrait(teacher_id), engine.menu(teacher_id)
    if view is None or plan is None:
        err.print(f"[red]未找到教师 {teacher_id}[/red]（工作区 {workspace}）")
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps({"portrait": view, "menu": plan}, ensure_ascii=False, default=str))
        return
    console.print(
        f"[bold]教师 {teacher_id}[/bold]  {view['county']} · {STAGE.label(view['stage'])} · {view['subject']} · "
        f"本周期已修 {view['hours_done'] or 0:g} / {view['hours_required'] or 0:g} 学时"
    )
    console.print(view["need_statement"])
    table = Table("课程", "学时", "形式", "推荐理由")
    for item in plan["items"]:
        table.add_row(
            f"{item['course_id']} {item['title']}", f"{item['hours']:g}", FORMAT.label_map().get(item["format"], ""),
            item["reason"],
        )  # fmt: skip
    console.print(table)
    total = sum(i["hours"] for i in plan["items"])
    console.print(f"合计 {total:g} 学时" + "".join(f"；{n}" for n in plan["notes"]))


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
        load_current(ws.bundles_dir),
        Encoder(s.encoder_model, cache_dir=s.model_cache, backend=s.encoder_backend),
        query,
        top_k,
    )
    if as_json:
        for rec in hits.to_dict("records"):
            typer.echo(json.dumps({**rec, "score": round(float(rec["score"]), 6)}, ensure_ascii=False))
        return
    table = Table("课程编号", "课程名称", "得分")
    for cid, title, score in zip(hits["course_id"], hits["title"], hits["score"], strict=True):
        table.add_row(str(cid), str(title), f"{score:.3f}")
    console.print(table)


@app.command()
def serve(
    workspace: WorkspaceOpt,
    port: Annotated[int, typer.Option("--port")] = 8000,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
) -> None:
    """The service and web pages of the workspace's current bundle."""
    import uvicorn

    from api.app import create_app
    from api.settings import ServiceSettings

    app = create_app(Workspace.open(workspace).root, settings=_from_env(ServiceSettings))
    uvicorn.run(app, host=host, port=port, log_level="info")


bundles_app = typer.Typer(help="trained bundles of a workspace", no_args_is_help=True)
app.add_typer(bundles_app, name="bundles")


@bundles_app.command("prune")
def bundles_prune(
    workspace: WorkspaceOpt,
    keep: Annotated[int, typer.Option("--keep", min=1, help="how many of the newest bundles to keep")],
) -> None:
    """Remove all but the newest N bundles; the bundle in force (CURRENT) is always kept."""
    from models.bundle import prune

    removed = prune(Workspace.open(workspace).bundles_dir, keep)
    console.print(f"已删除 {len(removed)} 个旧模型版本" + "".join(f"\n  {v}" for v in removed))


token_app = typer.Typer(help="access tokens for the service", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    workspace: WorkspaceOpt,
    role: Annotated[str, typer.Option("--role", help="teacher | trainer | admin")],
    teacher: Annotated[
        str | None, typer.Option("--teacher", help="the teacher a teacher token is for")
    ] = None,
    scope: Annotated[
        str | None, typer.Option("--scope", help="county:<名称> | city:<名称> | province:<名称>")
    ] = None,
    days: Annotated[
        float | None, typer.Option("--days", help="lifetime in days (default TDR_TOKEN_TTL_DAYS, 30)")
    ] = None,
) -> None:
    """Create a bearer token (printed once; only its hash is stored). It expires after its lifetime."""
    from datetime import timedelta

    from api.auth import create_token

    try:
        ttl = None if days is None else timedelta(days=days)
        typer.echo(create_token(Workspace.open(workspace).root, role, teacher, scope, ttl))
    except ValueError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from e


_TOKEN_STATE = {"active": "有效", "expired": "已过期", "revoked": "已吊销"}


@token_app.command("list")
def token_list(
    workspace: WorkspaceOpt,
    show_all: Annotated[bool, typer.Option("--all", help="also expired and revoked tokens")] = False,
) -> None:
    """List tokens by id (never the tokens themselves): role, binding, creation, expiry, state."""
    from datetime import UTC, datetime

    from api.auth import TokenStore

    now = datetime.now(UTC)
    table = Table("令牌编号", "角色", "教师 / 范围", "创建时间", "到期时间", "状态")
    for info in TokenStore(Workspace.open(workspace).root).list_tokens():
        state = info.state(now)
        if show_all or state == "active":
            table.add_row(
                info.token_id, info.role, info.teacher_id or info.scope or "—", info.created_at, info.expires_at,
                _TOKEN_STATE[state],
            )  # fmt: skip
    console.print(table)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="the id `tdr token list` shows")], workspace: WorkspaceOpt
) -> None:
    """Revoke a token: the service refuses it from its next request on."""
    from api.auth import TokenStore

    if not TokenStore(Workspace.open(workspace).root).revoke(token_id):
        err.print(f"[red]没有编号为 {token_id} 的有效令牌[/red]")
        raise typer.Exit(1)
    console.print(f"令牌 {token_id} 已吊销")


@app.command()
def demo(
    teachers: Annotated[int, typer.Option("--teachers")] = 5000,
    workspace: Annotated[Path, typer.Option("--workspace", "-w")] = Path("workspace/demo"),
    seed: Annotated[int, typer.Option("--seed")] = 7,
    port: Annotated[int, typer.Option("--port")] = 8000,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve")] = True,
) -> None:
    """Synthetic province → ingest → train → score → serve, in a local workspace."""
    from api.auth import create_token
    from data.ingest import ingest as run_ingest
    from data.synthetic import generate as run_generate
    from recommender.batch import score_local
    from recommender.effects import measure_growth

    ws = Workspace.open(workspace)
    src = ws.root / "input"
    with console.status("生成合成省份 generating…"):
        run_generate(src, n_teachers=teachers, seed=seed)
    console.print(ingest_table(run_ingest(src, ws)))
    _train_shown(ws, _settings(None))
    with console.status("评分 scoring…"):
        score_local(ws, ws.root / "scores", 20, 2000)
    with console.status("训后成效 measuring growth…"):
        measure_growth(ws)
    rows = pd.read_parquet(ws.portraits_dir / "teachers.parquet", columns=["teacher_id", "county"])
    first = rows.iloc[0]
    teacher_token = create_token(ws.root, "teacher", str(first["teacher_id"]))
    trainer_token = create_token(ws.root, "trainer", scope=f"county:{first['county']}")
    admin_token = create_token(ws.root, "admin")
    console.print(
        f"工作区 workspace: {ws.root}\n"
        f"教师 teacher token ({first['teacher_id']}): {teacher_token}\n"
        f"培训者 trainer token (county:{first['county']}): {trainer_token}\n"
        f"管理员 admin token: {admin_token}\n"
        f"打开 open http://127.0.0.1:{port}/ 并粘贴令牌 and paste a token"
    )
    if serve_after:
        serve(ws.root, port)


@app.command()
def evaluate(
    workspace: WorkspaceOpt,
    truth: Annotated[
        Path | None,
        typer.Option("--truth", help="ground truth folder of a synthetic province (DIR or DIR/_truth)"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="JSON report (default WS/evaluation.json)")
    ] = None,
    k: Annotated[int, typer.Option("--k")] = 10,
) -> None:
    """Offline metrics of the current bundle beside baselines computed in the same run; printed and written as JSON."""
    from recommender.evaluate import evaluate as run
    from recommender.evaluate import write_report

    ws = Workspace.open(workspace)
    with console.status("评估中 evaluating…"):
        result = run(ws, truth, k=k)
    path = write_report(result, out or ws.root / "evaluation.json")
    ranking = result.get("ranking") or {}
    table = Table("方法 method", f"NDCG@{k}")
    for name, figures in (ranking.get("methods") or {}).items():
        table.add_row(name, f"{figures.get('mean', float('nan')):.4f}")
    if ranking.get("methods"):
        console.print(table)
    # everything but the ranking table above, whole: a cut JSON text no longer parses
    console.print_json(data={key: result[key] for key in result if key != "ranking"}, default=str)
    console.print(f"report → {path}")


@app.command()
def select(
    project_id: Annotated[str, typer.Argument(help="项目编号，如 JX2022-006")],
    workspace: WorkspaceOpt,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="导出名单与分班 .xlsx")] = None,
    mix_counties: Annotated[bool, typer.Option("--mix-counties", help="各班混合不同县区")] = False,
    allocations: Annotated[Path | None, typer.Option("--allocations", help="各县名额 CSV/XLSX")] = None,
) -> None:
    """Precise trainee selection (精准选人) for a project, split into classes (50人编班), with reasons and cost."""
    from recommender.selection import SelectionError, read_allocations, run_selection, summary_text

    try:
        chosen = run_selection(
            Workspace.open(workspace),
            project_id,
            _settings(),
            out,
            mix_counties=mix_counties,
            allocations=read_allocations(allocations) if allocations else None,
        )
    except SelectionError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from e
    console.print(summary_text(chosen))
    if out:
        console.print(f"已导出：{out}")
