"""What the CLI draws in the terminal beyond a sentence: the rich tables of `tdr generate` and `tdr ingest`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.table import Table

from data.schema import TABLES

if TYPE_CHECKING:  # only for annotations: `tdr --help` stays quick
    from data.ingest import IngestReport
    from data.synthetic import GenerationSummary


def generation_table(summary: GenerationSummary) -> RenderableType:
    """What `tdr generate` prints: rows per file and where the ground truth is."""
    table = Table(
        title=f"合成省份已写入 {summary.out_dir}（种子 {summary.seed}，世界 {summary.world}）",
        title_justify="left",
    )
    table.add_column("文件 file")
    table.add_column("行数 rows", justify="right")
    for name, count in summary.rows.items():
        table.add_row(f"{name}.csv", f"{count:,}")
    return Group(table, f"真实值（训练不读取）：{summary.out_dir / '_truth'}", summary.note)


def ingest_table(report: IngestReport) -> Table:
    """What `tdr ingest` prints: accepted / rejected rows per table, the taxonomy and the skipped files."""
    table = Table(title="数据导入结果 (ingest)", title_justify="left")
    table.add_column("表 table")
    table.add_column("文件 files")
    table.add_column("读入 rows in", justify="right")
    table.add_column("接受 accepted", justify="right", style="green")
    table.add_column("拒绝 rejected", justify="right")
    for t in report.tables:
        rejected = f"[red]{t.rejected:,}[/red]" if t.rejected else "0"
        table.add_row(
            TABLES[t.table].label + f" {t.table}",
            "、".join(t.files),
            f"{t.rows_in:,}",
            f"{t.accepted:,}",
            rejected,
        )
    source = "内置能力框架" if report.taxonomy_source == "builtin" else report.taxonomy_source
    notes = [f"能力框架：{source}（{report.taxonomy_codes} 个能力点）"]
    if report.rejected:
        notes.append(f"被拒绝的行及原因见 {report.workspace / 'rejects'}")
    notes.extend(f"已跳过 {s.file}：{s.reason}" for s in report.skipped)
    table.caption = "\n".join(notes)
    table.caption_justify = "left"
    return table
