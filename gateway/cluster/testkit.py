"""Process test kit for cluster mode: a 3-node NATS cluster, ``carbonx engine`` x N and
``carbonx gateway`` x M as real subprocesses on loopback (tests/cluster, benchmarks/cluster_load.py).

    with ClusterKit(tmp_path) as kit:            # 3 NATS nodes, 2 engines, 2 gateways, all ready
        kit.gateways[0].trading                  # ws://127.0.0.1:PORT (a testkit.Server: .admin, .metrics, .proc)
        i = kit.active_engine()                  # index of the engine holding the lease
        kit.kill9_engine(i); kit.wait_active(exclude=i)
        kit.stop_engine(i); kit.cont_engine(i)   # SIGSTOP / SIGCONT (a deposed leader)
        kit.restart_engine(i)
        kit.kill9_gateway(0); kit.restart_gateway(0)
        kit.nats.kill9(1); kit.nats.restart(1)   # natskit.NatsCluster

Everything the kit assumes about the roles (their command lines, how a gateway reports ready,
where the lease lives) is in the ``ROLE CONTRACT`` block below, so a change of the roles'
interface is one edit here. The roles read one shared configuration file: the demo market
(``deploy/demo.toml``) plus a ``[cluster]`` table naming the NATS URLs and fresh stream names;
per-process identity and ports come from the command line.

Readiness: a gateway prints the ``carbonx ready trading=... admin=... metrics=...`` line as
``carbonx serve`` does, and then answers ``/readyz`` with 200 on its metrics port once it can
take orders (connected, caught up, an active engine seen). An engine is up when its process runs;
the active one is the engine whose id the lease in JetStream KV names.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from carbonx.gateway.cluster.lease import LEASE_KEY
from carbonx.gateway.natskit import NatsCluster
from carbonx.gateway.settings import ClusterSettings
from carbonx.gateway.testkit import DEMO, LOOPBACK_ANY_PORT, ROOT, Server, carbonx_argv, spawn_until_ready, write_config

# ------------------------------------------------------------------ ROLE CONTRACT (docs/cluster.md, TASK_cluster.md)

ENGINE_ARGV = ("engine", "--config", "{config}", "--id", "{id}")
GATEWAY_ARGV = ("gateway", "--config", "{config}", "--id", "{id}", *LOOPBACK_ANY_PORT)
DEFAULT_KV_BUCKET = ClusterSettings().kv_bucket


def roles_available() -> bool:
    """True if this carbonx has the cluster roles (``carbonx engine --help`` succeeds)."""
    proc = subprocess.run(carbonx_argv("engine", "--help"), capture_output=True, cwd=ROOT, timeout=60)
    return proc.returncode == 0


# ------------------------------------------------------------------ engines


@dataclass
class EngineProc:
    """A running (or dead) ``carbonx engine``."""

    index: int
    engine_id: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class ClusterKit:
    """See the module docstring. ``cluster``: extra ``[cluster]`` keys (e.g. ``lease_ttl_s``);
    ``sync_interval``: the NATS nodes' JetStream fsync interval (None = default, "always")."""

    base_dir: Path
    engines_count: int = 2
    gateways_count: int = 2
    nats_nodes: int = 3
    sync_interval: str | None = None
    cluster: dict[str, object] = field(default_factory=dict)
    base_config: Path = DEMO
    ready_timeout: float = 60.0
    nats: NatsCluster = field(init=False)
    config_path: Path = field(init=False)
    engines: list[EngineProc] = field(default_factory=list)
    gateways: list[Server] = field(default_factory=list)
    gateway_ids: list[str] = field(default_factory=list)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def __post_init__(self) -> None:
        self.base_dir = Path(self.base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.nats = NatsCluster(self.base_dir / "nats", nodes_count=self.nats_nodes, sync_interval=self.sync_interval)

    # ------------------------------------------------------------------ configuration

    def cluster_table(self) -> dict[str, object]:
        """The ``[cluster]`` table all processes share: this kit's NATS URLs, streams of its own."""
        return {
            "nats_urls": self.nats.urls,
            "replicas": min(3, self.nats_nodes),
            "command_stream": f"CMDS_{self.run_id}",
            "command_subject": f"carbonx.{self.run_id}.commands",
            "snapshot_bucket": f"SNAP_{self.run_id}",
            **self.cluster,
        }

    @property
    def kv_bucket(self) -> str:
        return str(self.cluster.get("kv_bucket", DEFAULT_KV_BUCKET))

    def write_config(self) -> Path:
        self.config_path = write_config(self.base_dir / "cluster.toml", self.base_config, cluster=self.cluster_table())
        return self.config_path

    # ------------------------------------------------------------------ whole cluster

    def start(self) -> ClusterKit:
        """NATS nodes, then engines, then gateways; returns when every gateway is ready and an engine is active."""
        self.nats.start()
        self.write_config()
        for i in range(self.engines_count):
            self.engines.append(EngineProc(i, f"engine-{i}", self.base_dir / f"engine-{i}.log"))
            self.start_engine(i)
        for i in range(self.gateways_count):
            self.gateway_ids.append(f"gw-{i}")
            self.gateways.append(self._spawn_gateway(i))
        for i in range(self.gateways_count):
            self.wait_gateway_ready(i)
        if self.engines_count:
            self.wait_active()
        return self

    def stop(self) -> None:
        """SIGTERM (SIGCONT first: a stopped process cannot exit) every role, then the NATS nodes."""
        procs: list[subprocess.Popen[bytes] | subprocess.Popen[str]] = [g.proc for g in self.gateways]
        procs += [e.proc for e in self.engines if e.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)
                    proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.nats.stop()

    def __enter__(self) -> ClusterKit:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def verify_full(self) -> dict[str, object]:
        """``carbonx journal verify --cluster --full`` on this kit's stream and snapshots (a replay
        from empty checked against every snapshot); its JSON report. AssertionError if it fails."""
        proc = subprocess.run(
            carbonx_argv("journal", "verify", "--cluster", "--full", "--config", str(self.config_path)),
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
        report: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
        return report

    def logs(self, n: int = 20) -> str:
        """The tails of every role's log (for assertion messages)."""
        parts = [f"--- engine-{e.index}\n{e.log_tail(n)}" for e in self.engines]
        parts += [f"--- gateway-{i}\n{g.log_tail(n)}" for i, g in enumerate(self.gateways)]
        return "\n".join(parts)

    # ------------------------------------------------------------------ engines

    def start_engine(self, index: int) -> None:
        engine = self.engines[index]
        if engine.running:
            raise RuntimeError(f"engine {index} is already running")
        argv = carbonx_argv(*(a.format(config=self.config_path, id=engine.engine_id) for a in ENGINE_ARGV))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with engine.log_path.open("ab") as log:
            engine.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)

    def kill9_engine(self, index: int) -> None:
        engine = self.engines[index]
        if engine.proc is not None and engine.proc.poll() is None:
            engine.proc.kill()
            engine.proc.wait(10)

    def restart_engine(self, index: int) -> None:
        self.kill9_engine(index)
        self.start_engine(index)

    def stop_engine(self, index: int) -> None:
        """SIGSTOP: the process freezes (holds its connections, renews nothing)."""
        engine = self.engines[index]
        assert engine.proc is not None
        os.kill(engine.proc.pid, signal.SIGSTOP)

    def cont_engine(self, index: int) -> None:
        engine = self.engines[index]
        assert engine.proc is not None
        os.kill(engine.proc.pid, signal.SIGCONT)

    def lease_holder(self) -> str | None:
        """The value of the lease key (names the active engine), or None if no one holds it.
        Blocking; callable from a thread with a running event loop too (it asks from another thread)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._read_lease())
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, self._read_lease()).result()

    async def _read_lease(self) -> str | None:
        import nats
        import nats.js.errors

        nc = await nats.connect(servers=self.nats.urls, connect_timeout=2, max_reconnect_attempts=2)
        try:
            kv = await nc.jetstream().key_value(self.kv_bucket)
            entry = await kv.get(LEASE_KEY)
            return None if entry.value is None else entry.value.decode(errors="replace")
        except (nats.js.errors.NotFoundError, nats.js.errors.KeyDeletedError):
            return None
        finally:
            await nc.close()

    def active_engine(self) -> int | None:
        """Index of the running engine whose id the lease names (None: none)."""
        holder = self.lease_holder()
        if holder is None:
            return None
        for engine in self.engines:
            if engine.running and engine.engine_id in holder:
                return engine.index
        return None

    def wait_active(self, exclude: int | None = None, timeout: float = 30.0) -> int:
        """Wait until an engine (other than ``exclude``) holds the lease; return its index."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):  # NATS electing a leader: ask again
                active = self.active_engine()
                if active is not None and active != exclude:
                    return active
            if time.monotonic() > deadline:
                raise AssertionError(f"no active engine (other than {exclude}) within {timeout}s\n{self.logs()}")
            time.sleep(0.1)

    # ------------------------------------------------------------------ gateways

    def _spawn_gateway(self, index: int) -> Server:
        data_dir = self.base_dir / f"gateway-{index}"
        data_dir.mkdir(parents=True, exist_ok=True)
        argv = carbonx_argv(*(a.format(config=self.config_path, id=self.gateway_ids[index]) for a in GATEWAY_ARGV))
        log_path = self.base_dir / f"gateway-{index}-{int(time.time() * 1000)}.log"
        return spawn_until_ready(argv, data_dir, log_path, timeout=self.ready_timeout)

    def wait_gateway_ready(self, index: int, timeout: float | None = None) -> None:
        """Poll the gateway's ``/readyz`` until it answers 200."""
        gateway = self.gateways[index]
        deadline = time.monotonic() + (timeout or self.ready_timeout)
        while True:
            if gateway.proc.poll() is not None:
                raise AssertionError(f"gateway {index} exited with {gateway.proc.returncode}\n{gateway.log_tail()}")
            if http_status(gateway.metrics + "/readyz") == 200:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"gateway {index} not ready (/readyz) in time\n{gateway.log_tail()}")
            time.sleep(0.1)

    def kill9_gateway(self, index: int) -> None:
        self.gateways[index].kill9()

    def restart_gateway(self, index: int) -> Server:
        """Start gateway ``index`` again with the same id (a new boot: new ports), wait until ready."""
        self.gateways[index].kill9()
        self.gateways[index] = self._spawn_gateway(index)
        self.wait_gateway_ready(index)
        return self.gateways[index]

    @property
    def trading_urls(self) -> list[str]:
        return [g.trading for g in self.gateways]


def http_status(url: str) -> int:
    """The HTTP status of a GET (0 if nothing answers)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0
