"""deploy/systemd/: the units' syntax and hardening, checked by systemd itself.

``systemd-analyze verify`` reads each unit as systemd would (unknown keys, bad values, a
missing executable: it prints a warning and still exits 0, so any output about the unit fails
the test) with ExecStart pointed at this environment's ``carbonx``; ``systemd-analyze security
--offline`` scores the sandboxing. The units must also keep the contract docs/operations.md
describes: a non-root user, a state directory, restart on failure but not on a configuration
error, secrets from an EnvironmentFile (never on the command line), the documented commands.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from carbonx.gateway.testkit import ROOT

UNITS = ROOT / "deploy" / "systemd"
INSTALLED = "/opt/carbonx/bin/carbonx"
COMMANDS = {
    "carbonx.service": "serve --config /etc/carbonx/carbonx.toml --data-dir /var/lib/carbonx",
    "carbonx-engine.service": "engine --config /etc/carbonx/cluster.toml",
    "carbonx-gateway.service": "gateway --config /etc/carbonx/cluster.toml",
}
needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (Debian's systemd package; .ci/run installs it)"
)


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value (systemd allows a key more than once)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, {})
            continue
        key, _, value = line.partition("=")
        out[section].setdefault(key.strip(), []).append(value.strip())
    return out


def test_the_three_units_are_there() -> None:
    assert {p.name for p in UNITS.glob("*.service")} == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_unit_contract(name: str) -> None:
    unit = read_unit(UNITS / name)
    service = unit["Service"]
    assert service["ExecStart"] == [f"{INSTALLED} {COMMANDS[name]}"]
    assert "secret" not in service["ExecStart"][0].lower() and "CARBONX_OPERATOR" not in service["ExecStart"][0]
    assert service["User"] == ["carbonx"] and service["Group"] == ["carbonx"]
    assert service["Restart"] == ["on-failure"] and set(service["RestartPreventExitStatus"][0].split()) == {"2", "3", "4"}
    assert service["NoNewPrivileges"] == ["yes"] and service["ProtectSystem"] == ["strict"]
    state = service["StateDirectory"][0]
    assert service["WorkingDirectory"] == [f"/var/lib/{state}"] and service["UMask"] == ["0077"]
    assert service["EnvironmentFile"] == ["-/etc/carbonx/carbonx.env"]
    assert "Environment" not in service or all("SECRET" not in v for v in service["Environment"])
    assert service["KillSignal"] == ["SIGTERM"] and int(service["TimeoutStopSec"][0]) >= 60
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    if name == "carbonx.service":
        assert state == "carbonx" and "/var/lib/carbonx" in service["ExecStart"][0]


def test_the_sysusers_entry_creates_the_units_user() -> None:
    entries = [line.split() for line in (UNITS / "carbonx.sysusers.conf").read_text().splitlines() if line and not line.startswith("#")]
    assert [(e[0], e[1]) for e in entries] == [("u", "carbonx")]


def local_copies(tmp_path: Path) -> list[Path]:
    """The units with ExecStart pointing at this environment's carbonx (verify checks it exists)."""
    carbonx = Path(sys.executable).with_name("carbonx")
    assert carbonx.exists(), "pip install -e . puts the carbonx script next to the interpreter"
    copies = []
    for name in sorted(COMMANDS):
        copy = tmp_path / name
        copy.write_text((UNITS / name).read_text().replace(INSTALLED, str(carbonx)))
        copies.append(copy)
    return copies


@needs_systemd
def test_systemd_analyze_verify_has_nothing_to_say(tmp_path: Path) -> None:
    copies = local_copies(tmp_path)
    run = subprocess.run(["systemd-analyze", "verify", *map(str, copies)], capture_output=True, text=True, timeout=120)
    about_ours = [line for line in (run.stdout + run.stderr).splitlines() if str(tmp_path) in line or "carbonx" in line]
    assert run.returncode == 0 and not about_ours, run.stdout + run.stderr


@needs_systemd
def test_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    """The check above can fail: a misspelt hardening key is reported."""
    (copy, *_) = local_copies(tmp_path)
    copy.write_text(copy.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"))
    run = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=120)
    assert "Unknown key" in run.stderr and "NoNewPrivilege" in run.stderr


@needs_systemd
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_sandboxing_scores_well(tmp_path: Path, name: str) -> None:
    """``systemd-analyze security`` exposure at most 2.0 of 10 (its "OK" band ends at 4.9)."""
    copies = {p.name: p for p in local_copies(tmp_path)}
    run = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=20", str(copies[name])], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr


def test_units_parse_as_ini() -> None:
    """No stray text outside a section (configparser is stricter about that than systemd)."""
    for path in UNITS.glob("*.service"):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(path.read_text())
        assert parser.sections() == ["Unit", "Service", "Install"], path.name
