"""End-to-end fixtures: the real ``carbonx serve`` process on loopback, real WebSocket clients.

Servers come from :mod:`carbonx.gateway.testkit`. Most tests share one session-wide server and leave
its books empty (``clean_books``); tests that halt, block, close the day, crash or restart get
a server of their own.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from carbonx.gateway.client import Client
from carbonx.gateway.testkit import ACCOUNTS, BROKERS, OPERATOR, Server, start_server


@contextlib.contextmanager
def running_server(data_dir: Path, **kw: object) -> Iterator[Server]:
    server = start_server(data_dir, **kw)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            with contextlib.suppress(AssertionError):
                server.terminate()


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the tests that leave the market as they found it (books emptied by
    :func:`clean_books` after each test)."""
    with running_server(tmp_path_factory.mktemp("shared") / "data") as server:
        yield server


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Server]:
    """A server of its own, for tests that halt, block, close the day or restart."""
    with running_server(tmp_path / "data") as server:
        yield server


@contextlib.asynccontextmanager
async def broker(server: Server, who: str, subprotocol: str | None = None) -> AsyncIterator[Client]:
    """A logged-in broker session (``who`` is ``"a"`` or ``"b"``)."""
    async with Client(server.trading, subprotocol) as c:
        await c.login(*BROKERS[who])
        yield c


@contextlib.asynccontextmanager
async def operator(server: Server) -> AsyncIterator[Client]:
    async with Client(server.admin) as c:
        await c.login(*OPERATOR)
        yield c


async def cancel_everything(server: Server) -> None:
    """Empty every book: cancel all open orders of both demo members."""
    for who in ("a", "b"):
        async with broker(server, who) as c:
            for account in ACCOUNTS[who]:
                await c.cancel_all(account=account)


@pytest.fixture
async def clean_books(shared_server: Server) -> AsyncIterator[Server]:
    """The shared server with empty books before and after the test."""
    await cancel_everything(shared_server)
    yield shared_server
    if shared_server.proc.poll() is None:
        await cancel_everything(shared_server)
