"""Sequencing: the one place where commands reach the engine (stage 3 of the data path).

Flow of every command (the durability contract, docs/journal.md):

    journal.append (encodes it: refused here if it cannot be) -> engine.apply
    -> ... group commit ... -> journal listener (``Sequencer.on_durable``)
    -> release, strictly in seq order: the reply to the requester, then the events
       to the event sink (market data, private notifications)

so nobody hears about a command before it is durable. Reads are computed at once but
their replies are queued behind every command applied so far (``after_durable``), so a
read never reveals state that a crash could still take back.

``Sequencer.submit`` is the only caller of ``Engine.apply`` in the gateway (a test walks the
source to keep it so): cluster mode replaces this seam. Start-up recovery and ``journal
verify`` replay what was sequenced before through ``replay`` / ``replay_all``, here too.
"""

from __future__ import annotations

import abc
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable

from carbonx.engine.engine import Engine
from carbonx.engine.schema import AnyCommand, Command, Event
from carbonx.gateway.journal import Journal, UnencodableCommand
from carbonx.gateway.metrics import LatencyHistogram
from carbonx.gateway.protocol import errors
from carbonx.gateway.protocol.errors import RpcError

log = logging.getLogger("carbonx.gateway")

Done = Callable[[list[Event]], None]  # runs with a command's events once it is durable
Then = Callable[[], None]  # runs once everything applied before it is durable


class EventSink(abc.ABC):
    """Receives durable events in sequence order (in-process today; NATS-fed later)."""

    @abc.abstractmethod
    def publish(self, seq: int, events: list[Event]) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush anything pending."""


class Sequencer:
    """Journals commands, applies them and releases their results once durable, in order."""

    # The seq whose ``done`` is running, for a reply that must name it when ``submit`` could not
    # return it (cluster mode: the stream orders a command after ``submit`` returned 0).
    releasing = 0

    def __init__(
        self,
        engine: Engine,
        journal: Journal,
        sink: EventSink,
        latency_durable: LatencyHistogram,
        latency_reply: LatencyHistogram,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.engine = engine
        self.on_fatal = on_fatal
        self.journal = journal
        self.sink = sink
        # (seq, events, done, recv_ns); events None: a read waiting for ``seq`` (``after_durable``)
        self.pending: deque[tuple[int, list[Event] | None, Done | None, int]] = deque()
        self.latency_durable = latency_durable
        self.latency_reply = latency_reply
        journal.add_listener(self.on_durable)

    def submit(self, cmd: Command, done: Done | None = None, recv_ns: int = 0) -> int:
        """Journal, then apply ``cmd``; ``done(events)`` runs once it is durable.

        Journal first (docs/journal.md): appending encodes the command, so a command the
        journal cannot record is refused (RpcError -32602) before the engine sees it:
        nothing changes, no sequence number is used, the exchange keeps running. Appending
        only buffers; the engine applies the command at once, before anything can be
        released, and the reply still waits for durability. After a journal failure every
        command is answered ``SHUTTING_DOWN`` and never reaches the engine."""
        failure = self.journal.failure
        if failure is not None:  # failed since the last check: refuse before the engine gets ahead
            self._stop(failure)
        if cmd.ts < self.engine.ts:  # the wall clock stepped back (NTP): engine time never does
            cmd.ts = self.engine.ts
        seq = self.engine.seq + 1
        try:
            self.journal.append(seq, cmd)
        except UnencodableCommand as exc:  # a value escaped its range check (engine.ranges): refuse it
            log.warning("refused a command the journal cannot encode: %s", exc)
            raise RpcError(
                errors.INVALID_PARAMS, "invalid params: a value is out of range", {"reason": errors.INVALID_PARAMS_REASON}
            ) from None
        except Exception as exc:  # the journal failed: nothing more can be made durable, stop serving
            self._stop(exc)
        try:
            events = self.engine.apply(cmd)
        except Exception:  # an engine bug: it is journaled anyway, so replay reproduces it
            log.exception("engine failed on %r", cmd)
            events = []
        self.pending.append((seq, events, done, recv_ns))
        return seq

    def _stop(self, exc: BaseException) -> None:
        """The journal failed: report it (the gateway stops) and answer the documented
        ``SHUTTING_DOWN``; the command was not made durable, so it did not happen."""
        if self.on_fatal is not None:
            self.on_fatal(exc)
        raise RpcError.business(errors.SHUTTING_DOWN, "the exchange is shutting down (its journal failed)")

    def after_durable(self, fn: Then) -> None:
        """Run ``fn`` once everything applied so far is durable (and released)."""
        if not self.pending:
            fn()
        else:
            self.pending.append((self.engine.seq, None, lambda _: fn(), 0))

    def on_durable(self, durable: int) -> None:
        """The journal listener: release everything up to ``durable``, in seq order (replies,
        then fan-out), with ``releasing`` naming the seq whose reply is being built; then
        ``_released(durable)``."""
        pending = self.pending
        now = time.time_ns()
        while pending and pending[0][0] <= durable:
            seq, events, done, recv_ns = pending.popleft()
            self.releasing = seq
            if events is None:
                if done is not None:
                    try:
                        done([])
                    except Exception:
                        log.exception("read reply after seq %d failed", seq)
                continue
            if recv_ns:
                self.latency_durable.observe_ns(now - recv_ns)
            if done is not None:
                try:
                    done(events)
                except Exception:
                    log.exception("reply for seq %d failed", seq)
                if recv_ns:
                    self.latency_reply.observe_ns(time.time_ns() - recv_ns)
            if events:
                try:
                    self.sink.publish(seq, events)
                except Exception:  # never let fan-out stall the release of later replies
                    log.exception("publishing seq %d failed", seq)
        self.releasing = 0
        self._released(durable)

    def _released(self, durable: int) -> None:
        """Everything up to ``durable`` is released. Nothing to do here (the local journal keeps
        ``durable_seq`` itself); the cluster sequencer advances its release watermark."""


# --------------------------------------------------------------------------- replay


def replay(engine: Engine, cmd: AnyCommand) -> str | None:
    """Apply one journaled command as the server did; returns what the engine raised (None if
    nothing). An exception inside the engine (a bug) is logged and the command stays applied
    as far as it got: the server journaled it and carried on, so replay must do the same to
    reach the same state."""
    if cmd.ts < engine.ts:  # the timestamp rule (``apply_replicated``); a no-op on a local journal
        cmd.ts = engine.ts
    try:
        engine.apply(cmd)
    except Exception as exc:
        _engine_raised(engine, cmd)
        return f"seq {engine.seq}: {exc!r}"
    return None


def replay_events(engine: Engine, cmd: AnyCommand) -> list[Event]:
    """``replay`` for consumers of the events (supervision's start-up derivation): the
    events the command caused, none if the engine raised (as the live server released)."""
    try:
        return engine.apply(cmd)
    except Exception:
        _engine_raised(engine, cmd)
        return []


def replay_all(engine: Engine, commands: Iterable[AnyCommand]) -> None:
    """``replay`` every command, in order (the start-up loop: no per-command result)."""
    apply = engine.apply
    for cmd in commands:
        if cmd.ts < engine.ts:  # the timestamp rule (``apply_replicated``)
            cmd.ts = engine.ts
        try:
            apply(cmd)
        except Exception:
            _engine_raised(engine, cmd)


def apply_replicated(engine: Engine, cmd: AnyCommand) -> list[Event]:
    """Apply one command of the cluster's command stream (a replica: the engine role, a
    gateway's copy) and return its events, exactly as ``Sequencer.submit`` applies its own.

    **The timestamp rule**: a command's effective time is the later of its stamp (the clock of
    the gateway that built it) and the engine's time so far, ``ts = max(engine.ts, cmd.ts)``:
    gateways' clocks disagree, engine time never goes back, and since the rule is a function
    of the stream alone every replica (and ``replay``) computes the same time. An exception
    inside the engine (a bug) is logged and the command stays applied as far as it got, as
    in ``replay``: every replica does the same, so they stay identical."""
    if cmd.ts < engine.ts:
        cmd.ts = engine.ts
    try:
        return engine.apply(cmd)
    except Exception:
        _engine_raised(engine, cmd)
        return []


def _engine_raised(engine: Engine, cmd: AnyCommand) -> None:
    log.exception("engine raised on replay of seq %d (%s); continuing as the server did", engine.seq, type(cmd).__name__)
