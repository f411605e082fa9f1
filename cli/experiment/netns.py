"""A private network for one local run, so that a node can be cut off (the `partition` fault).

Layout (all made with `ip`, no nftables, no netem: Jepsen's nemeses; ip-netns(8)):

    root namespace                          one namespace per node
    coordinator, collector, load generator   node-K and its backend instances
    bridge PREFIX-br  10.213.X.1/24 ─── veth PREFIX-nK ═══ eth0 10.213.X.(10+K)/24, lo up

X is a third octet no address or route of this host uses, so parallel runs (and the
host's own networks) never share a subnet. PREFIX is `sc<pid><letter>`: the pid of the
process that made it, so leftovers of a run that was killed with SIGKILL are recognised
and removed by the next run, and a letter per network made by that process.

`cut(node)` sets the node's root-side veth down: the bridge drops its frames both ways, as
with a pulled cable (connections stall and time out; nothing is refused). `heal(node)` sets
it up again. `close()` removes the veths, namespaces and bridge; it is idempotent and is
called on every exit path of the cluster.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import re
import shutil
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass, field
from itertools import count

import psutil

from daemons.core.errors import ConfigError

SUPERNET = ipaddress.IPv4Network("10.213.0.0/16")
FIRST_HOST = 10  # node K is .(10 + K): .1 is the bridge, the rest stay free for additions
MAX_NODES = 254 - FIRST_HOST + 1
NEEDS = ("partition faults need root and iproute2 (ip netns) on the local cluster; "
         "run as root or drop the partition fault")
_STALE = re.compile(r"^sc(\d+)[a-z]-(?:br|n\d+)$")
_ROUTE_TYPES = {"unicast", "local", "broadcast", "multicast", "anycast", "blackhole", "unreachable",
                "prohibit", "throw", "nat"}
_made = count()


class NetnsError(ConfigError):
    """An `ip` command failed; the message names the command and how to clean up."""


def check_support() -> None:
    """ConfigError unless this process can make namespaces (root, `ip` with netns support)."""
    if os.geteuid() != 0:
        raise ConfigError(f"not running as root: {NEEDS}")
    if shutil.which("ip") is None:
        raise ConfigError(f"no `ip` command on PATH (apt-get install iproute2): {NEEDS}")
    try:
        _ip("netns", "list")
    except NetnsError as exc:
        raise ConfigError(f"`ip netns` does not work here ({exc}): {NEEDS}") from None


@dataclass
class Network:
    """The bridge, and one namespace + veth per node, of one run. Make it with `create()`."""

    prefix: str
    subnet: ipaddress.IPv4Network
    nodes: list[str]
    _made: list[tuple[str, str]] = field(default_factory=list)  # ("link" | "netns", name), in order
    _cuts: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls, nodes: list[str]) -> Network:
        """Make the network for `nodes` (names in order: node K is the K-th); removed again on failure."""
        check_support()
        if len(nodes) > MAX_NODES:
            raise ConfigError(f"partition faults support at most {MAX_NODES} nodes, not {len(nodes)}; "
                              "use fewer nodes or drop the partition fault")
        _remove_stale()
        letter = "abcdefghijklmnopqrstuvwxyz"[next(_made) % 26]
        net = cls(f"sc{os.getpid()}{letter}", _free_subnet(), list(nodes))
        try:
            net._build()
        except BaseException:
            with contextlib.suppress(NetnsError):  # the error that stopped the build is the one to show
                net.close()
            raise
        return net

    @property
    def host(self) -> str:
        """The bridge's address: daemons of the root namespace bind and are reached here."""
        return str(self.subnet[1])

    def address(self, node: str) -> str:
        return str(self.subnet[FIRST_HOST + self._index(node)])

    def namespace(self, node: str) -> str:
        return f"{self.prefix}-n{self._index(node)}"

    def exec_prefix(self, node: str) -> list[str]:
        """Argv prefix running a command inside `node`'s namespace (`ip netns exec` execs: same pid)."""
        return ["ip", "netns", "exec", self.namespace(node)]

    def cut(self, node: str) -> None:
        """Cut `node` off everyone else until as many `heal`s as `cut`s (overlapping partitions nest)."""
        with self._lock:
            _ip("link", "set", self._veth(node), "down")
            self._cuts[node] += 1

    def heal(self, node: str) -> None:
        with self._lock:
            self._cuts[node] = max(0, self._cuts[node] - 1)
            if not self._cuts[node]:
                _ip("link", "set", self._veth(node), "up")

    def close(self) -> None:
        """Remove everything made, newest first; safe to call again. Processes still in a namespace
        keep it alive (unnamed) until they exit, so stop them first."""
        failed, left = [], []
        with self._lock:
            while self._made:
                kind, name = self._made.pop()
                if not _exists(kind, name):
                    continue
                try:
                    _delete(kind, name)
                except NetnsError as exc:
                    failed.append(str(exc))
                    left.append(f"ip {kind} del {name}")
        if failed:
            raise NetnsError(f"could not remove the run's network ({'; '.join(failed)}): remove it by hand with "
                             f"`{'; '.join(left)}` (a later run with a partition fault does it once this "
                             "process has exited)")

    def _index(self, node: str) -> int:
        try:
            return self.nodes.index(node)
        except ValueError:
            raise ConfigError(f"{node!r} is not a node of this run's network ({', '.join(self.nodes)})") from None

    def _veth(self, node: str) -> str:
        return f"{self.prefix}-n{self._index(node)}"  # the same name as its namespace: one per node

    def _build(self) -> None:
        bridge = f"{self.prefix}-br"
        self._made.append(("link", bridge))
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{self.host}/{self.subnet.prefixlen}", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for node in self.nodes:
            ns, veth = self.namespace(node), self._veth(node)
            self._made.append(("netns", ns))
            _ip("netns", "add", ns)
            self._made.append(("link", veth))
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", veth, "master", bridge, "up")
            _ip("-n", ns, "addr", "add", f"{self.address(node)}/{self.subnet.prefixlen}", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")  # the node's backend instances listen on 127.0.0.1


def _ip(*args: str) -> str:
    cmd = ["ip", *args]
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30)
    except subprocess.CalledProcessError as exc:
        raise NetnsError(f"`{' '.join(cmd)}` failed: {exc.stderr.strip() or exc.returncode}") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"`{' '.join(cmd)}` failed: {exc}") from None
    return out.stdout


def _names(kind: str) -> list[str]:
    if kind == "netns":  # "NAME (id: 3)" per line
        return [line.split()[0] for line in _ip("netns", "list").splitlines() if line.strip()]
    # "3: NAME@if2: <...> ..." per line; the @peer part is not in the name
    return [line.split(":")[1].strip().split("@")[0] for line in _ip("-o", "link", "show").splitlines()]


def _exists(kind: str, name: str) -> bool:
    return name in _names(kind)


def _remove_stale() -> None:
    """Remove the networks of runs whose process is gone (killed before its teardown ran)."""
    for kind in ("netns", "link"):
        for name in _names(kind):
            match = _STALE.match(name)
            if match and not psutil.pid_exists(int(match.group(1))):
                # NetnsError: gone meanwhile (a veth goes with its peer's namespace)
                with contextlib.suppress(NetnsError):
                    _delete(kind, name)


def _delete(kind: str, name: str) -> None:
    if kind == "netns":
        _ip("netns", "del", name)
    else:
        _ip("link", "del", name)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of SUPERNET that overlaps no address or route of this host, picked at random so
    that runs starting at the same time rarely pick the same one."""
    used = []
    for line in _ip("-o", "-4", "addr", "show").splitlines():
        used.append(ipaddress.IPv4Interface(line.split()[3]).network)
    for line in _ip("-4", "route", "show", "table", "all").splitlines():
        words = line.split()
        if words and words[0] in _ROUTE_TYPES:  # "local 10.0.0.1 dev ...", "blackhole 10.9.0.0/16"
            words = words[1:]
        if words and words[0][0].isdigit():  # not "default": it overlaps everything and takes nothing
            used.append(ipaddress.IPv4Network(words[0], strict=False))
    free = [s for s in SUPERNET.subnets(new_prefix=24)
            if s.network_address.packed[2] not in (0, 255) and not any(s.overlaps(u) for u in used)]
    if not free:
        raise ConfigError(f"no free /24 left in {SUPERNET} for the run's network: remove unused bridges "
                          "(ip -o -4 addr) or drop the partition fault")
    return random.choice(free)
