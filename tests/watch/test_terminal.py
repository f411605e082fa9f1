"""`schedctl watch` in a real terminal (tmux) against a running local experiment.

A short centralized run with a kill fault is started in the background; the watch runs in a
detached tmux session of a fixed size, and the test reads its screen with capture-pane: the
nodes, the request figures and the fault appear, the killed node's row turns DEAD, and `q`
ends the watch without a process left behind while the run goes on. Then `experiment run
--watch`: quitting the dashboard leaves the run to finish and report.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from cli.watch import journal

SCHEDCTL = str(Path(sys.executable).with_name("schedctl"))
TMUX = shutil.which("tmux")
pytestmark = [pytest.mark.skipif(TMUX is None, reason="no tmux (Debian's `tmux`)"), pytest.mark.timeout(300)]


class Pane:
    """One command in a detached tmux session on a server of its own (-L), 160x48."""

    def __init__(self, command: list[str], tmp: Path) -> None:
        assert TMUX is not None
        self.base = [TMUX, "-L", f"watch-test-{uuid.uuid4().hex[:8]}"]
        # pytest's environment may say COLUMNS=80: the terminal's own size must rule
        env = ["env", "-u", "COLUMNS", "-u", "LINES", f"PYTHONPATH={os.environ.get('PYTHONPATH', '')}",
               f"PATH={os.environ.get('PATH', '')}"]
        # The shell says how the command ended: tmux may not learn it (a pane's exit status can stay unknown)
        line = f"cd {shlex.quote(str(tmp))} && {shlex.join([*env, *command])}; echo \"[exit $?]\""
        self.tmux("new-session", "-d", "-s", "w", "-x", "160", "-y", "48", line)
        self.tmux("resize-window", "-t", "w", "-x", "160", "-y", "48")  # no client attached: say it again
        self.tmux("set-option", "-t", "w", "remain-on-exit", "on")
        self.pid = int(self.tmux("display-message", "-p", "-t", "w", "#{pane_pid}").strip())

    def tmux(self, *args: str) -> str:
        return subprocess.run([*self.base, *args], capture_output=True, text=True, check=True, timeout=10).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "w", "-S", "-200")

    def wait_for(self, what: str, test: Callable[[str], bool], timeout_s: float = 60.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.screen()
            if test(text):
                return text
            time.sleep(0.5)
        raise AssertionError(f"the screen never showed {what} within {timeout_s:g} s:\n{self.screen()}")

    def dead(self) -> bool:
        return self.tmux("display-message", "-p", "-t", "w", "#{pane_dead}").strip() == "1"

    def close(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self.tmux("kill-server")


@contextlib.contextmanager
def experiment(tmp: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`schedctl experiment run` in the background (its own process group); stopped on the way out."""
    with (tmp / "run.log").open("wb") as log:
        proc = subprocess.Popen([SCHEDCTL, "experiment", "run", "--results-dir", str(tmp / "results"), *args],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the runner tears its cluster down
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def wait_for_run(results: Path, timeout_s: float = 60.0) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = journal.newest_running(results)
        if found is not None:
            return found
        time.sleep(0.25)
    raise AssertionError(f"no run started under {results}")


def shows(*patterns: str) -> Callable[[str], bool]:
    return lambda screen: all(re.search(p, screen) for p in patterns)


def gone(pids: list[int], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
            return True
        time.sleep(0.2)
    return False


def test_the_watch_shows_nodes_figures_a_fault_and_a_dead_node_and_quits_clean(tmp_path: Path) -> None:
    run_args = ["--duration", "30", "--rps", "4", "--cv", "1", "--nodes", "2", "--scheduler", "centralized",
                "--fault", "10:kill:node-1", "--timeout", "15", "--name", "watched"]
    with experiment(tmp_path, *run_args) as run:
        wait_for_run(tmp_path / "results")
        pane = Pane([SCHEDCTL, "watch", "--results-dir", str(tmp_path / "results")], tmp_path)
        try:
            pane.wait_for("both nodes alive", shows(r"node-0\s+alive", r"node-1\s+alive"))
            watcher = [pane.pid, *(c.pid for c in psutil.Process(pane.pid).children(recursive=True))]
            screen = pane.wait_for("the coordinator", shows(r"coordinator\s+yes\s+standalone\s+active"))
            assert "GPU MEMORY" in screen and "█" in screen  # the memory bar
            pane.wait_for("request figures", shows(r"centralized\s+\d+\.\d\s+\d+%\s+\d+ ms"))
            pane.wait_for("the fault", shows(r"fault\s+node-1\s+kind=kill"))
            pane.wait_for("a model load", shows(r"(cold_start|load_started|loaded)\s+node-\d\s+model="))
            screen = pane.wait_for("node-1 dead", shows(r"node-1\s+DEAD"), 30)
            assert re.search(r"node-0\s+alive", screen)
            print(screen)
            pane.tmux("send-keys", "-t", "w", "q")
            assert gone(watcher), f"the watch left processes: {[p for p in watcher if psutil.pid_exists(p)]}"
            assert pane.wait_for("the watch's exit", shows(r"\[exit 0\]"), 10) and pane.dead()
            assert run.poll() is None, "quitting the watch must not stop the run"
        finally:
            pane.close()


def test_experiment_run_watch_goes_on_after_the_dashboard_quits(tmp_path: Path) -> None:
    pane = Pane([SCHEDCTL, "experiment", "run", "--results-dir", str(tmp_path / "results"), "--duration", "6",
                 "--rps", "2", "--cv", "1", "--nodes", "1", "--scheduler", "gossip", "--timeout", "10",
                 "--name", "watching", "--watch"], tmp_path)
    try:
        pane.wait_for("the dashboard", shows(r"node-0\s+alive", r"PEER\s+SEES ALIVE\s+SUSPECT\s+DEAD"))
        pane.tmux("send-keys", "-t", "w", "q")
        screen = pane.wait_for("the run's report", lambda s: "results:" in s and "[exit" in s, 120)
        assert "[gossip] starting 1 nodes" in screen  # said while the dashboard was open, printed after it
        (run_dir,) = (tmp_path / "results").glob("watching_gossip_*")
        assert (run_dir / "requests.csv").is_file() and (run_dir / "timeline.html").is_file()  # reported as ever
        assert (run_dir / "live" / "ended").exists()
        assert "[exit 0]" in screen
    finally:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(pane.pid).children(recursive=True):
                child.kill()
        pane.close()


def test_a_stopped_watched_run_gives_the_terminal_back_and_reports(tmp_path: Path) -> None:
    """SIGTERM (a supervisor, `timeout`) stops the run as without --watch, and closes the dashboard."""
    pane = Pane([SCHEDCTL, "experiment", "run", "--results-dir", str(tmp_path / "results"), "--duration", "60",
                 "--rps", "1", "--cv", "1", "--nodes", "1", "--scheduler", "gossip", "--timeout", "10",
                 "--name", "stopped", "--watch"], tmp_path)
    try:
        pane.wait_for("the dashboard", shows(r"node-0\s+alive"))
        (run,) = [p for p in psutil.Process(pane.pid).children() if "experiment" in " ".join(p.cmdline())]
        run.send_signal(signal.SIGTERM)
        screen = pane.wait_for("the run's end", shows(r"\[exit \d+\]"), 120)
        assert "[exit 130]" in screen and "interrupted" in screen and "results:" in screen, screen
    finally:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(pane.pid).children(recursive=True):
                child.kill()
        pane.close()
