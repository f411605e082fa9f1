"""`schedctl watch`, and the watch `schedctl experiment run --watch` opens on the run it starts."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from cli.errors import exit_on_config_error
from cli.watch import journal
from cli.watch.model import WatchModel
from cli.watch.sources import Feed, StatusPoller, cluster_feed, local_feed
from daemons.core.errors import ConfigError

LOOK_EVERY_S = 2.0  # how often a watch without a live arm looks for the next one


@exit_on_config_error
def watch(
    run_dir: Annotated[Path | None, typer.Argument(
        help="A run's directory (results/NAME_SCHEDULER_TIME); default: the newest run in progress.")] = None,
    results_dir: Annotated[Path, typer.Option(help="Where `experiment run` writes its runs.")] = Path("results"),
    cluster: Annotated[Path | None, typer.Option("--cluster", help="Watch a deployed cluster: the cluster file "
                                                 "ansible deploy.yml writes (CURVE keys from its [security]).")] = None,
) -> None:
    """A live dashboard of a run in progress or a deployed cluster; q quits.

    Shows every node (state, GPU memory, compute, queue, in flight, models loaded and
    loading, when it last answered), the coordinator pair or the gossip peers' views, the
    request figures of the last 10 s per arm with sparklines, and every fault, verdict and
    cluster event as it happens. It asks each daemon for its status once a second (as
    `schedctl status` does) and reads the run's live journal (RUN_DIR/live/): it adds no
    work to the daemons, and a daemon that stops answering turns red. Quitting leaves a
    run going.

    Examples:

    \b
      schedctl watch
      schedctl watch results/exp_gossip_20250101_120000
      schedctl watch --cluster ansible/.keys/prod/cluster.toml
    """
    if cluster is not None:
        feed = cluster_feed(cluster, run_dir if run_dir is not None and journal.read_run(run_dir) else None)
        run_app(feed, f"cluster {cluster}")
        return
    if run_dir is not None:
        found = local_feed(run_dir)
        if found is None:
            raise ConfigError(f"{run_dir} has no live journal ({journal.LIVE}/{journal.RUN}): pass the directory of "
                              "a run `schedctl experiment run` is making (or made), or --cluster FILE")
        run_app(found, str(run_dir))
        return
    newest = journal.newest_running(results_dir)
    if newest is None:
        raise ConfigError(f"no run in progress under {results_dir}/: start one with `schedctl experiment run`, "
                          "pass its directory, or watch a deployed cluster with --cluster FILE")
    run_app(local_feed(newest) or _waiting(), f"runs under {results_dir}/", follower(results_dir))


def check_terminal() -> None:
    """The dashboard draws on a terminal: say so in one line when there is none."""
    if not (sys.stdin.isatty() and sys.__stderr__ is not None and sys.__stderr__.isatty()):
        raise ConfigError("schedctl watch draws a dashboard and needs a terminal: run it in one "
                          "(in scripts, `schedctl status` prints a snapshot)")


def run_app(feed: Feed, describe: str, follow: Callable[[Feed], Feed] | None = None,
            stop: threading.Event | None = None) -> None:
    from cli.watch.app import WatchApp  # Textual loads only for the dashboard itself

    check_terminal()
    try:
        WatchApp(feed, describe, follow, stop).run()
    finally:
        feed.close()


def watch_run(results_dir: Path, pid: int, stop: threading.Event) -> None:
    """The dashboard of the run process `pid` is making (`experiment run --watch`): it waits for
    the run's first arm, follows each next arm, and closes when the run is stopped."""
    run_app(_waiting(), f"this run (results under {results_dir}/)", follower(results_dir, pid), stop)


def follower(results_dir: Path, pid: int | None = None) -> Callable[[Feed], Feed]:
    """Moves a watch on to the run's next arm when the one watched has ended (or none was there)."""
    looked = [0.0]

    def follow(feed: Feed) -> Feed:
        if (feed.run_dir is not None and not feed.ended) or time.monotonic() - looked[0] < LOOK_EVERY_S:
            return feed
        looked[0] = time.monotonic()
        found = journal.newest_running(results_dir, pid)
        if found is None or found == feed.run_dir:
            return feed
        return local_feed(found, feed.model) or feed

    return follow


def _waiting() -> Feed:
    """A feed with nothing to watch yet: the follower replaces it when a run starts."""
    return Feed(WatchModel(), StatusPoller([], None))
