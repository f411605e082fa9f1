"""The terminal dashboard of `schedctl watch`: renders the model's snapshot once a second.

Textual (textual.textualize.io), a maintained TUI framework built on Rich: it has the
widgets this screen needs (tables, sparklines, a scrolling log, a footer of key bindings),
refreshes on a timer inside its own event loop, redraws only what changed, and restores
the terminal on exit, `q` included. Everything shown comes from model.py's Snapshot;
nothing here decides what a figure means.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from datetime import datetime
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Label, RichLog, Sparkline, Static

from cli.watch.model import ArmFigures, NodeView, Snapshot, severity
from cli.watch.sources import Feed
from daemons.rundir import Event

REFRESH_S = 1.0
GIB = float(1 << 30)
BAR = 12
NODE_COLUMNS = ("NODE", "STATE", "HEARD", "GPU MEMORY", "COMPUTE", "QUEUE", "IN FLIGHT", "LOADED", "LOADING")
EVENT_STYLES = {"fault": "bold red", "bad": "yellow", "good": "green", "info": ""}


class WatchApp(App[None]):
    """One feed on one screen; the feed is swapped (`Feed` of the next arm) by `follow`."""

    TITLE = "schedctl watch"
    CSS = """
    #head { height: 1; background: $boost; text-wrap: nowrap; text-overflow: ellipsis; }
    #nodes { height: auto; max-height: 50%; }
    #control { height: auto; }
    #figures { height: auto; max-height: 12; }
    #arms { width: 2fr; height: auto; }
    #sparks { width: 1fr; height: auto; }
    Sparkline { height: 2; }
    #log { height: 1fr; min-height: 5; border-top: solid $primary; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [("q", "quit", "Quit")]

    def __init__(self, feed: Feed, describe: str, follow: Callable[[Feed], Feed] | None = None,
                 stop: threading.Event | None = None) -> None:
        super().__init__()
        self.feed, self.describe, self.follow, self.stop = feed, describe, follow, stop
        self._shown: set[tuple[float, str, str, str]] = set()

    def compose(self) -> ComposeResult:
        yield Static(id="head")
        yield DataTable(id="nodes", cursor_type="none", show_cursor=False)
        yield Static(id="control")
        with Horizontal(id="figures"):
            yield Static(id="arms")
            with Vertical(id="sparks"):
                yield Label("finished requests/s, last 60 s", id="rate-label")
                yield Sparkline([], id="rate")
                yield Label("TTFT p50 (ms), last 60 s", id="ttft-label")
                yield Sparkline([], id="ttft")
        yield RichLog(id="log", max_lines=2000, wrap=False, markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#nodes", DataTable).add_columns(*NODE_COLUMNS)
        self.feed.start()
        self.set_interval(REFRESH_S, self.refresh_view)
        self.refresh_view()

    def on_unmount(self) -> None:
        self.feed.close()

    def refresh_view(self) -> None:
        if self.stop is not None and self.stop.is_set():  # the run was stopped (SIGTERM): give the terminal back
            self.exit()
            return
        if self.follow is not None:
            feed = self.follow(self.feed)
            if feed is not self.feed:
                self.feed.close()
                self.feed = feed
                feed.start()
        snap = self.feed.poll()
        state = "ended" if self.feed.ended else "live"
        self.query_one("#head", Static).update(
            f" {self.describe}  ·  {state}  ·  {datetime.now():%H:%M:%S}  ·  q quits (a run goes on)")
        self._show_nodes(snap)
        self.query_one("#control", Static).update(_control(snap))
        self.query_one("#arms", Static).update(_arms(snap.arms))
        current = next((a for a in snap.arms if a.arm == self.feed.arm), snap.arms[-1] if snap.arms else None)
        if current is not None:
            self.query_one("#rate", Sparkline).data = list(current.rate_history)
            self.query_one("#ttft", Sparkline).data = list(current.ttft_history)
        self._show_events(snap.events)

    def _show_nodes(self, snap: Snapshot) -> None:
        table = self.query_one("#nodes", DataTable)
        table.clear()
        for node in snap.nodes:
            table.add_row(*node_cells(node))

    def _show_events(self, events: tuple[Event, ...]) -> None:
        log = self.query_one("#log", RichLog)
        for e in events:
            key = (e.t_s, e.kind, e.target, e.detail)
            if key not in self._shown:
                self._shown.add(key)
                log.write(event_line(e))


def node_cells(node: NodeView) -> list[Text]:
    """A node's row; a dead node's row is red throughout."""
    dead = node.state != "alive"
    style = "bold red" if dead else ""
    frac = node.memory_fraction
    memory = "-" if frac is None else (f"{_bar(frac)} {100 * frac:3.0f}% "
                                       f"{(node.memory_used or 0) / GIB:.1f}/{(node.memory_total or 0) / GIB:.0f}G")
    compute = "-" if node.gpu_utilization is None else f"{100 * node.gpu_utilization:3.0f}%"
    heard = "never" if node.heard_s_ago is None else f"{node.heard_s_ago:.1f}s ago"
    cells = [node.name, node.state.upper() if dead else node.state, heard, memory, compute, _opt(node.queue_depth),
             _opt(node.in_flight), _models(node.ready), _models(node.loading)]
    return [Text(c, style=style) for c in cells]


def _models(models: tuple[str, ...]) -> str:
    """Model names without their organisation (meta-llama/Llama-2-7b-hf: Llama-2-7b-hf): the row fits."""
    return ", ".join(m.rsplit("/", 1)[-1] for m in models) or "-"


def _bar(fraction: float) -> str:
    full = max(0, min(BAR, round(fraction * BAR)))
    return "█" * full + "░" * (BAR - full)


def _opt(value: int | None) -> str:
    return "-" if value is None else str(value)


def _control(snap: Snapshot) -> Table | str:
    """The coordinator pair, or each gossip peer's membership view."""
    if snap.coordinators:
        table = Table("COORDINATOR", "ANSWERS", "ROLE", "STATE", "EPOCH", "DECISIONS/S", box=None, pad_edge=False)
        for c in snap.coordinators:
            style = "" if c.answering else "bold red"
            table.add_row(Text(c.name, style), Text("yes" if c.answering else "DEAD", style), c.role, c.state,
                          _opt(c.epoch), f"{c.decisions_per_s:.1f}")
        return table
    if snap.peers:
        table = Table("PEER", "SEES ALIVE", "SUSPECT", "DEAD", "VIEW AGE PER PEER (s)", box=None, pad_edge=False)
        for p in snap.peers:
            ages = "  ".join(f"{m} {a:.1f}" for m, a in sorted(p.ages.items()))
            if not p.answering:  # a silent peer's last view: dimmed, its name red
                table.add_row(Text(f"{p.observer} (silent: last view)", "bold red"), str(p.alive), str(p.suspect),
                              str(p.dead), ages, style="dim")
                continue
            table.add_row(p.observer, str(p.alive), Text(str(p.suspect), "yellow" if p.suspect else ""),
                          Text(str(p.dead), "red" if p.dead else ""), ages)
        return table
    return "no coordinator or gossip view yet"


def _arms(arms: tuple[ArmFigures, ...]) -> Table | str:
    if not arms:
        return "requests: none finished yet"
    table = Table("ARM", "REQ/S", "SUCCESS", "TTFT P50", "TTFT P99", "TPOT", "GOODPUT/S", "TOTAL",
                  box=None, pad_edge=False, title="requests, last 10 s", title_justify="left")
    for a in arms:
        table.add_row(a.arm, f"{a.rate:.1f}", _pct(a.success), _ms(a.ttft_p50_ms), _ms(a.ttft_p99_ms), _ms(a.tpot_ms),
                      "-" if math.isnan(a.goodput) else f"{a.goodput:.1f}", str(a.total))
    return table


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.0f}%"


def _ms(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.0f} ms"


def event_line(e: Event) -> Text:
    when = datetime.fromtimestamp(e.t_s).strftime("%H:%M:%S") if e.t_s > 1e9 else f"{e.t_s:8.1f}"
    return Text(f"{when}  {e.kind:<22} {e.target:<14} {e.detail}", style=EVENT_STYLES[severity(e)])

