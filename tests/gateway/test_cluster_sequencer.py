"""ClusterSequencer (cluster mode's sequencer seam), without NATS: what is released when.

A reply is released only once the local replica applied the command *and* the active engine's
watermark reached its seq; everything (replies, other gateways' events, reads) leaves in seq
order; a command that cannot be encoded is refused before anything is published."""

from __future__ import annotations

import pytest

from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import Engine
from carbonx.engine.schema import Event, PlaceOrder, Tick
from carbonx.engine.testkit import T0
from carbonx.gateway.cluster.commands import CommandPublisher
from carbonx.gateway.cluster.gateway_role import ClusterJournal, ClusterRegistry, ClusterSequencer
from carbonx.gateway.cluster.replica import AppliedBatch
from carbonx.gateway.metrics import LatencyHistogram
from carbonx.gateway.protocol.errors import RpcError
from carbonx.gateway.sequencer import EventSink
from carbonx.gateway.sessions import Session
from carbonx.gateway.settings import ClusterSettings, Limits


class Sink(EventSink):
    def __init__(self) -> None:
        self.seqs: list[int] = []

    def publish(self, seq: int, events: list[Event]) -> None:
        self.seqs.append(seq)


def make(config: MarketConfig) -> tuple[ClusterSequencer, CommandPublisher, Sink]:
    publisher = CommandPublisher(None, ClusterSettings(), "gw-1.abcd", lambda exc: None)  # type: ignore[arg-type]
    sink = Sink()
    seq = ClusterSequencer(Engine(config), ClusterJournal(publisher, 0), sink, LatencyHistogram(), LatencyHistogram(), "gw-1.abcd")
    return seq, publisher, sink


def ev() -> list[Event]:
    return [Tick(ts=T0)]  # any non-empty event list will do for the release order


async def test_a_reply_waits_for_the_local_replica_and_the_active_engine(demo_config: MarketConfig) -> None:
    seq, publisher, sink = make(demo_config)
    got: list[tuple[str, int]] = []
    assert seq.submit(Tick(ts=T0), lambda events: got.append(("mine-1", seq.releasing))) == 0
    assert seq.submit(Tick(ts=T0), lambda events: got.append(("mine-2", seq.releasing))) == 0
    assert publisher.records == 0 and publisher._count == 2  # buffered for the publisher task, in order
    seq.after_durable(lambda: got.append(("read-0", 0)))  # nothing applied yet: answered at once
    assert got == [("read-0", 0)]
    # the stream ordered another gateway's command first, then ours
    seq.on_batch(AppliedBatch(7, 1, [("gw-2.ffff/1", ev()), ("gw-1.abcd/1", ev())]))
    seq.after_durable(lambda: got.append(("read-after-2", 0)))
    assert got == [("read-0", 0)] and sink.seqs == []  # applied here, not yet by the active engine
    seq.on_watermark(1)
    assert got == [("read-0", 0)] and sink.seqs == [1]
    seq.on_watermark(2)
    assert got == [("read-0", 0), ("mine-1", 2), ("read-after-2", 0)] and sink.seqs == [1, 2]
    seq.on_watermark(5)  # the engine is ahead of this replica: released when applied here
    seq.on_batch(AppliedBatch(8, 3, [("gw-1.abcd/2", ev())]))
    assert got[-1] == ("mine-2", 3) and sink.seqs == [1, 2, 3]
    assert seq.cluster_journal.durable_seq == 3 and not seq.waiting


async def test_an_unencodable_command_is_refused_before_anything_is_published(demo_config: MarketConfig) -> None:
    seq, publisher, _ = make(demo_config)
    bad = PlaceOrder(ts=T0, member="M1", account="A1", instrument="SHEA", side="buy", price=2**70, quantity=1)
    with pytest.raises(RpcError):
        seq.submit(bad)
    assert publisher._count == 0 and not seq.waiting


def test_session_ids_carry_the_gateway_life() -> None:
    registry = ClusterRegistry(Limits(), "gw-1.abcd.")
    s = Session(Limits())
    registry.admit(s)
    assert s.session_id.startswith("gw-1.abcd.") and len(s.session_id) <= 64
