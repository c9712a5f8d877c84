"""Which JetStream API errors ``retrying`` waits out (a cluster forming or electing, a peer
restarting) and which it raises at once (a configuration JetStream will never accept). No
NATS server needed: the errors are the client's own types."""

from __future__ import annotations

import nats.errors
import nats.js.errors
import pytest

from carbonx.gateway.cluster.journal import retrying
from carbonx.gateway.journal import JournalError


def no_peers() -> nats.js.errors.APIError:
    return nats.js.errors.BadRequestError(code=400, err_code=10005, description="no suitable peers for placement, peer offline")


def name_in_use() -> nats.js.errors.APIError:
    return nats.js.errors.BadRequestError(code=400, err_code=10058, description="stream name already in use with a different configuration")


@pytest.mark.parametrize(
    "error",
    [no_peers, lambda: nats.errors.TimeoutError(), lambda: nats.js.errors.ServiceUnavailableError(code=503, description="no leader")],
    ids=["no-peers-for-placement", "timeout", "503"],
)
async def test_transient_errors_are_retried_until_the_call_succeeds(error: object) -> None:
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise error()  # type: ignore[operator]
        return "done"

    assert await retrying(call, seconds=5) == "done" and calls == 3


async def test_a_configuration_jetstream_refuses_is_raised_at_once() -> None:
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        raise name_in_use()

    with pytest.raises(nats.js.errors.BadRequestError):
        await retrying(call, seconds=5)
    assert calls == 1


async def test_a_peer_that_never_comes_back_fails_after_the_deadline() -> None:
    async def call() -> None:
        raise no_peers()

    with pytest.raises(JournalError, match=r"creating stream X failed for 0\.3s"):
        await retrying(call, seconds=0.3, what="creating stream X")
