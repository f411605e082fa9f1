"""The layout's import facts (README, "Layout"): which layers may load what.

Each check imports in a fresh interpreter, so what an earlier test loaded cannot hide or fake
a dependency.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WIRE_AND_WEB = ("zmq", "msgpack", "uvicorn", "starlette")

PROBE = """
import importlib, pkgutil, sys
for name in {packages!r}:
    pkg = importlib.import_module(name)
    for m in pkgutil.walk_packages(getattr(pkg, "__path__", []), name + "."):
        importlib.import_module(m.name)
print(" ".join(sorted(k for k in sys.modules if k.split(".")[0] in {roots!r} or k.startswith({prefixes!r}))))
"""


def loaded_after_importing(packages: list[str], roots: tuple[str, ...] = (),
                           prefixes: tuple[str, ...] = ()) -> set[str]:
    """The modules among `roots`/`prefixes` that importing every module of `packages` loads."""
    code = PROBE.format(packages=packages, roots=roots, prefixes=prefixes or ("\0",))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(out.stdout.split())


@pytest.mark.parametrize("package", ["daemons.core", "daemons.policy", "daemons.profiles", "daemons.rundir",
                                     "cli.report"])
def test_lower_floors_load_neither_wire_nor_web_server(package: str) -> None:
    loaded = loaded_after_importing([package], roots=WIRE_AND_WEB)
    assert not loaded, f"importing {package} loads {sorted(loaded)}"


@pytest.mark.parametrize("package", ["daemons.core", "daemons.policy", "daemons.profiles"])
def test_the_pure_floors_and_policies_count_nothing_for_prometheus(package: str) -> None:
    # Metrics are counted by the daemons around a policy call (daemons/*/metrics.py), never inside.
    loaded = loaded_after_importing([package], roots=("prometheus_client",))
    assert not loaded, f"importing {package} loads {sorted(loaded)}"


def test_the_node_loads_neither_coordinator_nor_emulator_web_server() -> None:
    # The emulator's engine and Service may load (backend = "emulator-inproc"), its web server never.
    loaded = loaded_after_importing(["daemons.node"], roots=("uvicorn", "starlette"),
                                    prefixes=("daemons.coordinator", "daemons.emulator.daemon",
                                              "daemons.emulator.tgi_routes", "daemons.emulator.route_helpers"))
    assert not loaded, f"the node agent loads {sorted(loaded)}"


# What `schedctl start node` imports (cli/lazy.py builds only the command asked for) and then the
# node agent of an in-process node (cli/start_node.py, daemons/node/inproc.py). A node agent
# carries these for its life, once per node of a local cluster: nothing of the CLI's other
# commands, of the report, plot or dashboard stacks, nor (in-process) the HTTP client stack.
START_NODE = """
import sys, typer
from cli.main import app
typer.main.get_command(app).commands["start"].commands["{daemon}"]
{imports}
print(" ".join(sorted(sys.modules)))
"""
NODE_AGENT = ("daemons.bus.activation", "daemons.bus.metrics", "daemons.bus.security", "daemons.node.config",
              "daemons.node.server", "daemons.node.inproc")
NEVER_IN_A_DAEMON = ("numpy", "pandas", "matplotlib", "bokeh", "textual", "rich", "cli.experiment", "cli.report",
                     "cli.study", "cli.watch", "cli.loadgen", "daemons.loadgen", "daemons.coordinator")
NEVER_IN_AN_INPROC_NODE = ("huggingface_hub", "httpx", "httpx2", "uvicorn", "starlette")


def modules_of_a_started(daemon: str, imports: tuple[str, ...]) -> set[str]:
    code = START_NODE.format(daemon=daemon, imports="\n".join(f"import {m}" for m in imports))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(out.stdout.split())


def offenders(loaded: set[str], banned: tuple[str, ...]) -> list[str]:
    return sorted(m for m in loaded if any(m == b or m.startswith(b + ".") for b in banned))


def test_a_node_agent_loads_only_what_a_node_needs() -> None:
    loaded = modules_of_a_started("node", NODE_AGENT)
    assert "daemons.node.server" in loaded and "daemons.emulator.engine" in loaded  # the probe sees the node
    bad = offenders(loaded, NEVER_IN_A_DAEMON + NEVER_IN_AN_INPROC_NODE)
    assert not bad, f"schedctl start node (emulator-inproc) loads {bad}"


def test_an_emulator_loads_no_cli_stack_beside_its_web_server() -> None:
    loaded = modules_of_a_started("emulator", ("daemons.emulator.daemon",))
    assert "uvicorn" in loaded  # the probe sees the emulator's own server
    bad = offenders(loaded, (*NEVER_IN_A_DAEMON, "daemons.node", "huggingface_hub"))
    assert not bad, f"schedctl start emulator loads {bad}"


def test_the_command_tree_is_whole_when_listed() -> None:
    # Lazy loading must not hide a command: listing the tree builds every one of them.
    code = ("import typer; from cli.main import app; root = typer.main.get_command(app); "
            "print(' '.join(f'{n}:{len(getattr(c, \"commands\", {}))}' for n, c in root.commands.items()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    listed = dict(item.split(":") for item in out.stdout.split())
    assert list(listed) == ["status", "watch", "logs", "start", "loadgen", "node", "experiment", "study", "keys"]
    assert listed["start"] == "4" and int(listed["experiment"]) >= 3


def test_the_probe_sees_what_a_package_loads() -> None:
    # The check above must be able to fail: the coordinator does load the wire.
    assert {"zmq", "msgpack"} <= loaded_after_importing(["daemons.coordinator"], roots=WIRE_AND_WEB)


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_nothing_in_the_library_imports_the_cli() -> None:
    offenders = [f"{path.relative_to(ROOT)}: {name}"
                 for path in sorted((ROOT / "daemons").rglob("*.py"))
                 for name in _imported_modules(path) if name == "cli" or name.startswith("cli.")]
    assert not offenders, offenders


MANAGER = """
import sys
from daemons.node.catalog import Catalog
from daemons.node.config import NodeConfig
from daemons.node.instances import make_manager
config = NodeConfig(backend="{backend}", models=("facebook/opt-125m",), gpu_backend="emulated")
catalog = Catalog(config.models, config.gpu, config.checkpoint_tier, config.kv_tokens, config.init_s)
make_manager(config, catalog, lambda: catalog.gpu_memory, lambda: None)
print(" ".join(sorted(sys.modules)))
"""


@pytest.mark.parametrize(("backend", "loaded"), [("emulator", True), ("emulator-inproc", False)])
def test_an_http_node_loads_its_client_stack_at_start_an_inproc_node_never(backend: str, loaded: bool) -> None:
    # Loaded when the node starts, not in the first cold start's path (it would add ~0.1 s to
    # that request's TTFT); an in-process node has no HTTP instance to talk to.
    code = MANAGER.format(backend=backend)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert ("huggingface_hub" in out.stdout.split()) is loaded, out.stderr
