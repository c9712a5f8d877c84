"""deploy/Dockerfile, tested without a Docker engine: its instructions are read
(tests/deploy/dockerfile.py) and checked (slim Python 3.11 base, non-root user, the demo's ports
exposed, a HEALTHCHECK on /readyz, exec-form CMD, every copied file present and let through the
.dockerignore), then the build stage's RUN steps are executed in CI's own environment (the
image's /opt/carbonx venv becomes a temporary one, the COPY'd sources a temporary build
directory), the image's CMD runs from that venv (ports moved to free ones, paths to temporary
ones) and the HEALTHCHECK command is run against it: healthy while it serves, unhealthy once
stopped."""

from __future__ import annotations

import fnmatch
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from carbonx.gateway.testkit import READY, ROOT
from tests.deploy.dockerfile import Instruction, Stage, parse

DOCKERFILE = ROOT / "deploy" / "Dockerfile"
IGNORE = ROOT / "deploy" / "Dockerfile.dockerignore"
DEMO = tomllib.loads((ROOT / "deploy" / "demo.toml").read_text())


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())


def test_two_stages_on_slim_python_311(stages: list[Stage]) -> None:
    build, runtime = stages
    assert build.name == "build" and build.base == runtime.base == "python:3.11-slim"
    assert sys.version_info[:2] == (3, 11), "the RUN steps below are checked with the image's Python version"


def test_runs_as_a_non_root_user_it_creates(stages: list[Stage]) -> None:
    runtime = stages[-1]
    user = runtime.one("USER").args.split(":")[0]
    assert user not in ("root", "0", "")
    setup = " ".join(i.args for i in runtime.all("RUN"))
    assert "useradd --system" in setup and re.search(rf"\b{user}\b", setup)
    assert runtime.instructions.index(runtime.one("USER")) > max(runtime.instructions.index(i) for i in runtime.all("RUN"))


def test_exposes_the_configured_ports_and_checks_readyz(stages: list[Stage]) -> None:
    runtime = stages[-1]
    server = DEMO["server"]
    assert runtime.one("EXPOSE").words() == [str(server[k]) for k in ("port", "admin_port", "metrics_port")]
    check = runtime.one("HEALTHCHECK")
    cmd = check.exec_form()
    assert cmd is not None and f"http://127.0.0.1:{server['metrics_port']}/readyz" in " ".join(cmd)
    assert {"interval", "timeout", "start-period", "retries"} <= set(check.options())


def test_cmd_serves_the_copied_config_on_all_interfaces(stages: list[Stage]) -> None:
    runtime = stages[-1]
    cmd = runtime.one("CMD").exec_form()
    assert cmd is not None and cmd[:2] == ["carbonx", "serve"]
    config = cmd[cmd.index("--config") + 1]
    copied = {f"/etc/carbonx/{Path(src).name}" for i in runtime.all("COPY") if "from" not in i.options() for src in i.words()[:-1]}
    assert config in copied
    for flag in ("--host", "--admin-host", "--metrics-host"):
        assert cmd[cmd.index(flag) + 1] == "0.0.0.0", flag
    assert "--allow-plaintext" in cmd, "off loopback without TLS the server refuses to start unless told plain text is meant"
    assert cmd[cmd.index("--data-dir") + 1] == runtime.one("WORKDIR").args == runtime.one("VOLUME").exec_form()[0]  # type: ignore[index]


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        if fnmatch.fnmatch(path, pat) or path.startswith(pat + "/"):
            result = not negate
    return result


def copied_sources(stages: list[Stage]) -> list[str]:
    return [src for stage in stages for i in stage.all("COPY") if "from" not in i.options() for src in i.words()[:-1]]


def test_every_copied_path_exists_and_passes_the_dockerignore(stages: list[Stage]) -> None:
    patterns = [line.strip() for line in IGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    sources = copied_sources(stages)
    assert {"pyproject.toml", "engine/", "gateway/", "deploy/demo.toml"} <= set(sources)
    for src in sources:
        assert (ROOT / src).exists(), src
        assert not ignored(src.rstrip("/"), patterns), f"{src} is excluded by {IGNORE.name}"
    assert ignored(".venv", patterns) and ignored("tests/e2e/conftest.py", patterns)


# --------------------------------------------------------------------------- the steps, executed here


def image_paths(tmp: Path) -> dict[str, str]:
    """Absolute paths of the image -> where they are in this test."""
    return {
        "/opt/carbonx": str(tmp / "opt" / "carbonx"),
        "/etc/carbonx": str(tmp / "etc" / "carbonx"),
        "/var/lib/carbonx": str(tmp / "data"),
    }


def localise(text: str, paths: dict[str, str]) -> str:
    for image_path, here in paths.items():
        text = text.replace(image_path, here)
    return text


def build(stage: Stage, tmp: Path, paths: dict[str, str]) -> None:
    """COPY into the build directory (WORKDIR), then each RUN in a shell, as the builder would."""
    workdir = tmp / "src"
    workdir.mkdir(parents=True)
    assert stage.one("WORKDIR").args == "/src"
    for copy in stage.all("COPY"):
        *sources, dest = copy.words()
        for src in sources:
            target = workdir / dest / Path(src).name if dest.endswith("/") and not src.endswith("/") else workdir / dest
            if (ROOT / src).is_dir():
                shutil.copytree(ROOT / src, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / src, target)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    for run in stage.all("RUN"):
        command = localise(run.args, paths)
        command = re.sub(r"^python\b", sys.executable, command)  # the image's python: this interpreter (3.11)
        done = subprocess.run(["sh", "-ec", command], cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"RUN {run.args} (line {run.line}) failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def runtime_files(stage: Stage, paths: dict[str, str]) -> None:
    """The runtime stage's COPYs of repository files (the venv is already in place)."""
    for copy in stage.all("COPY"):
        if "from" in copy.options():
            continue
        *sources, dest = copy.words()
        target = Path(localise(dest, paths))
        target.mkdir(parents=True, exist_ok=True)
        for src in sources:
            shutil.copy(ROOT / src, target / Path(src).name)


@pytest.fixture(scope="module")
def built(stages: list[Stage], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("image")
    paths = image_paths(tmp)
    build(stages[0], tmp, paths)
    runtime_files(stages[-1], paths)
    Path(paths["/var/lib/carbonx"]).mkdir()
    yield tmp, paths


def test_the_build_steps_install_a_working_carbonx(built: tuple[Path, dict[str, str]]) -> None:
    _, paths = built
    venv = Path(paths["/opt/carbonx"])
    assert (venv / "bin" / "carbonx").exists() and (venv / "bin" / "nats-server").exists(), "the [cluster] extra is installed"
    done = subprocess.run([str(venv / "bin" / "carbonx"), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "serve" in done.stdout
    site = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import carbonx.gateway, sys; print(carbonx.gateway.__path__[0])"],
        capture_output=True, text=True, timeout=60, cwd="/",
    )  # fmt: skip
    assert site.returncode == 0 and str(venv) in site.stdout, "installed into the venv (not the source tree)"


def healthcheck(stages: list[Stage], metrics_port: int, venv: Path) -> int:
    """The image's HEALTHCHECK command, aimed at ``metrics_port``: its exit status."""
    cmd = stages[-1].one("HEALTHCHECK").exec_form()
    assert cmd is not None and cmd[0] == "python"
    configured = str(DEMO["server"]["metrics_port"])
    argv = [str(venv / "bin" / "python"), *(a.replace(f":{configured}/", f":{metrics_port}/") for a in cmd[1:])]
    return subprocess.run(argv, capture_output=True, timeout=30).returncode


def start_cmd(stages: list[Stage], paths: dict[str, str], tmp: Path) -> tuple[subprocess.Popen[str], int]:
    """The image's CMD from the built venv, on loopback and free ports; returns (process, metrics port)."""
    cmd = stages[-1].one("CMD").exec_form()
    assert cmd is not None
    argv = [localise(a, paths) for a in cmd]
    argv = [("127.0.0.1" if a == "0.0.0.0" else a) for a in argv]
    argv += ["--port", "0", "--admin-port", "0", "--metrics-port", "0", "--fsync-policy", "os"]  # later flags win
    venv = Path(paths["/opt/carbonx"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARBONX_", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"  # ENV PATH=/opt/carbonx/bin:$PATH
    env["PYTHONUNBUFFERED"] = "1"
    log = (tmp / "server.log").open("w")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True, cwd=paths["/var/lib/carbonx"], env=env)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            break
        match = READY.match(line.strip())
        if match:
            return proc, int(match.group(3).rsplit(":", 1)[1])
    proc.kill()
    raise AssertionError(f"the image's CMD did not get ready:\n{(tmp / 'server.log').read_text()[-3000:]}")


def test_the_cmd_serves_and_the_healthcheck_follows_it(stages: list[Stage], built: tuple[Path, dict[str, str]]) -> None:
    tmp, paths = built
    proc, metrics_port = start_cmd(stages, paths, tmp)
    venv = Path(paths["/opt/carbonx"])
    try:
        assert healthcheck(stages, metrics_port, venv) == 0
        assert (Path(paths["/var/lib/carbonx"]) / "journal").is_dir(), "state goes to the VOLUME"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert healthcheck(stages, metrics_port, venv) != 0, "a stopped exchange is unhealthy"


def test_instruction_reader() -> None:
    text = 'FROM a AS b\n# c\nRUN x \\\n  # inside\n  && y\nHEALTHCHECK --interval=1s CMD ["p", "-c", "q"]\nFROM b\nCMD ["z"]\n'
    first, second = parse(text)
    assert (first.base, first.name, second.base) == ("a", "b", "b")
    assert first.one("RUN").args == "x && y" and first.one("RUN").line == 3
    assert first.one("HEALTHCHECK").exec_form() == ["p", "-c", "q"] and first.one("HEALTHCHECK").options() == {"interval": "1s"}
    assert isinstance(second.one("CMD"), Instruction) and second.one("CMD").exec_form() == ["z"]
