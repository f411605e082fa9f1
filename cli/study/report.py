"""The study report: report.md and one self-contained report.html (plots embedded as base64).

Both are rendered from one list of blocks (heading, paragraph, table, image), in this
order: hypotheses and their verdicts with effect sizes; each metric's mean and 95%
interval per arm with the paired differences and their decisions, then the plots; the
sweep's saturation points; every run with its status and a link to its directory. A run
whose directory was deleted is listed `missing`; the figures leave it out.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from pathlib import Path

from cli.study.aggregate import GOODPUT_SHARE, Aggregate, Verdict
from cli.study.ledger import DONE, point_label
from cli.study.metrics import info, shown_interval

REPORT_MD, REPORT_HTML = "report.md", "report.html"
HOST_FLAG = "host_saturated"  # summary.csv's flag: the host, not the scheduler, was the bottleneck


@dataclass(frozen=True)
class Block:
    kind: str  # h1 | h2 | p | table | img
    text: str = ""
    rows: tuple[tuple[str, ...], ...] = ()  # table: header first
    links: tuple[tuple[str, str], ...] = ()  # table cells that link: (text, href)


def _verdict_row(v: Verdict, labels: list[str]) -> tuple[str, ...]:
    shown = info(v.hypothesis.metric)
    d = v.difference
    effect = (f"{v.hypothesis.arm} − {v.hypothesis.other} = {shown_interval(d.diff, shown.scale)}"
              if d.diff.n else "n/a")
    extra = []
    if not math.isnan(d.relative):
        extra.append(f"{100 * d.relative:+.1f}%")
    if not math.isnan(d.cohen_dz):
        extra.append(f"d_z={d.cohen_dz:.2f}")
    return (v.hypothesis.text, labels[v.point], f"**{v.verdict}**" + (f" ({v.note})" if v.note else ""),
            effect + (f"; {', '.join(extra)}" if extra else ""))


def blocks(agg: Aggregate) -> list[Block]:
    study = agg.study
    labels = [point_label(p) for p in agg.points]
    done = [r for r in agg.results if r.status == DONE]
    out = [Block("h1", f"Study {study.name}")]
    if study.description:
        out.append(Block("p", study.description))
    out.append(Block("p", f"{len(done)} of {len(agg.results)} runs done; {len(study.arms)} arms × "
                          f"{len(labels)} point(s) × {study.repeats} repeats (seeds {study.seeds[0]}.."
                          f"{study.seeds[-1]}, each replayed by every arm: paired). Intervals are 95% Student-t "
                          "over repeats; a difference is a winner only when its interval excludes zero."))
    not_done = [r for r in agg.results if r.status != DONE]
    if not_done:
        out.append(Block("p", "Not in the figures: " + ", ".join(f"{r.entry.id} ({r.status})" for r in not_done)))
    saturated = [r.entry.id for r in done if r.values.get(HOST_FLAG, 0.0) == 1.0]
    if saturated:
        out.append(Block("p", f"WARNING: host saturated in {len(saturated)} run(s) ({', '.join(saturated)}): their "
                              "figures measure this machine, not the scheduler."))
    out.append(Block("h2", "Hypotheses"))
    if agg.verdicts:
        rows = [("hypothesis", "point", "verdict (95%)", "effect: mean difference [CI] (N pairs)")]
        out.append(Block("table", rows=(*rows, *(_verdict_row(v, labels) for v in agg.verdicts))))
    else:
        out.append(Block("p", "This study states no hypothesis."))
    out += _metric_blocks(agg, labels)
    if agg.saturation:
        out.append(Block("h2", "Saturation"))
        sweep = agg.study.sweep
        out.append(Block("p", "The saturation point of a curve is the lowest offered load at which goodput falls "
                              f"below {GOODPUT_SHARE:.0%} of the offered load (fewer than {GOODPUT_SHARE:.0%} of "
                              "the requests sent meet every SLO, mean over repeats; cli/study/aggregate.py `knee`)."))
        out.append(Block("p", "; ".join(
            f"{s.arm} {s.others}: " + (f"saturated at {sweep}={s.x:g} ({s.why})" if s.x is not None
                                       else f"not saturated up to the largest {sweep}")
            for s in agg.saturation)))
        out += [Block("img", f"sweep_{m}.png") for m in agg.metrics if (agg.study_dir / f"sweep_{m}.png").exists()]
    out += _run_blocks(agg, labels)
    return out


def _metric_blocks(agg: Aggregate, labels: list[str]) -> list[Block]:
    arms = [a.name for a in agg.study.arms]
    out = [Block("h2", "Metrics")]
    for p, label in enumerate(labels):
        if len(labels) > 1:
            out.append(Block("p", f"**Point {label}**"))
        rows: list[tuple[str, ...]] = [("metric", *arms, "paired differences [95% CI] → decision")]
        for m in agg.metrics:
            shown = info(m)
            diffs = [f"{q.difference.a} − {q.difference.b}: {shown_interval(q.difference.diff, shown.scale)} "
                     f"→ {q.decision}" for q in agg.pairs if q.point == p and q.metric == m]
            if all(agg.cell(p, a, m).n == 0 for a in arms):
                diffs = ["not measured: no run's summary.csv has this column"]
            means = (shown_interval(agg.cell(p, a, m), shown.scale) for a in arms)
            rows.append((shown.label, *means, "; ".join(diffs)))
        out.append(Block("table", rows=tuple(rows)))
    out += [Block("img", f"metric_{m}.png") for m in agg.metrics if (agg.study_dir / f"metric_{m}.png").exists()]
    return out


def _run_blocks(agg: Aggregate, labels: list[str]) -> list[Block]:
    rows: list[tuple[str, ...]] = [("run", "arm", "point", "seed", "status", "wall (s)", "host saturated",
                                    "directory")]
    links = []
    for r in agg.results:
        e = r.entry
        flag = r.values.get(HOST_FLAG, math.nan)
        rows.append((e.id, e.arm, labels[e.point_index], str(e.seed), r.status, f"{e.wall_s:g}",
                     "n/a" if math.isnan(flag) else ("YES" if flag == 1.0 else "no"), e.run_dir or "-"))
        if e.run_dir and r.status == DONE:
            links.append((e.run_dir, e.run_dir))
    return [Block("h2", "Runs"), Block("table", rows=tuple(rows), links=tuple(links))]


def render_markdown(items: list[Block]) -> str:
    parts = []
    for b in items:
        if b.kind == "h1":
            parts.append(f"# {b.text}")
        elif b.kind == "h2":
            parts.append(f"## {b.text}")
        elif b.kind == "p":
            parts.append(b.text)
        elif b.kind == "img":
            parts.append(f"![{b.text}]({b.text})")
        else:
            linked = dict(b.links)
            rows = [tuple(f"[{c}]({linked[c]}/)" if c in linked else c for c in row) for row in b.rows]
            cells = [" | ".join(c.replace("|", "\\|") for c in row) for row in rows]
            parts.append("\n".join([f"| {cells[0]} |", "|" + "---|" * len(rows[0]),
                                    *(f"| {c} |" for c in cells[1:])]))
    return "\n\n".join(parts) + "\n"


def _inline(text: str) -> str:
    """Escaped text with **bold** spans."""
    pieces = html.escape(text).split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(pieces))


def render_html(items: list[Block], study_dir: Path) -> str:
    body = []
    for b in items:
        if b.kind in ("h1", "h2"):
            body.append(f"<{b.kind}>{html.escape(b.text)}</{b.kind}>")
        elif b.kind == "p":
            body.append(f"<p>{_inline(b.text)}</p>")
        elif b.kind == "img":
            data = base64.b64encode((study_dir / b.text).read_bytes()).decode("ascii")
            body.append(f'<p><img alt="{html.escape(b.text)}" src="data:image/png;base64,{data}"></p>')
        else:
            linked = dict(b.links)
            head = "".join(f"<th>{html.escape(c)}</th>" for c in b.rows[0])
            rows = []
            for row in b.rows[1:]:
                tds = "".join(f'<td><a href="{html.escape(linked[c])}/">{html.escape(c)}</a></td>' if c in linked
                              else f"<td>{_inline(c)}</td>" for c in row)
                rows.append(f"<tr>{tds}</tr>")
            body.append(f"<table><tr>{head}</tr>{''.join(rows)}</table>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}img{max-width:100%}")
    title = html.escape(items[0].text if items else "study")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(agg: Aggregate) -> list[Path]:
    items = blocks(agg)
    md, page = agg.study_dir / REPORT_MD, agg.study_dir / REPORT_HTML
    md.write_text(render_markdown(items), encoding="utf-8")
    page.write_text(render_html(items, agg.study_dir), encoding="utf-8")
    return [md, page]
