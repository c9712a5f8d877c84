"""Every integer from outside has a range (engine.ranges), for every method of the protocol.

Property tests drive ``Gateway._on_frame`` (no sockets) for every method of both listeners
with params generated at and beyond every integer and decimal boundary (the wire's own
bounds, the engine's ranges, int64/uint64 edges, 20-digit strings). The journal is a fake
that encodes every command with the real journal's encoder. Each request must succeed or
get a specific error (never -32603, never a logged exception), and every command the
gateway built must be encodable: the bounds stop a bad value before the journal would.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msgspec.structs import fields, replace

from carbonx.engine import ranges
from carbonx.engine import reasons as R
from carbonx.engine.engine import Engine
from carbonx.engine.schema import AnyCommand, AuctionCreate, Command, Deposit, PlaceOrder
from carbonx.engine.units import format_fen
from carbonx.gateway import protocol
from carbonx.gateway.app import Gateway
from carbonx.gateway.journal import Journal, LocalJournal, UnencodableCommand, encode_frame, read_records
from carbonx.gateway.rpc import ADMIN_METHODS, TRADING_METHODS
from carbonx.gateway.sequencer import Sequencer
from carbonx.gateway.sessions import Session
from carbonx.gateway.settings import RANGES, ClusterSettings, Limits, ServerSettings, SettingsError, parse_settings
from tests.gateway.support import DEMO_TEXT, ManualJournal, demo_settings

# ----------------------------------------------------------------------------- harness


class EncodingJournal(Journal):
    """A journal that encodes each command exactly as ``LocalJournal`` does (and keeps
    the frames); durability is released by the test (``release``)."""

    def __init__(self) -> None:
        self.durable_seq = 0
        self.last = 0
        self.listeners: list[Callable[[int], None]] = []
        self.commands: list[AnyCommand] = []
        self.unencodable: list[Any] = []
        self.batches = self.records = self.last_batch_size = self.bytes_written = 0
        self.fsync_seconds_total = self.last_fsync_seconds = 0.0

    def append(self, seq: int, cmd: Any) -> None:
        assert seq == self.last + 1
        try:
            encode_frame(seq, cmd)
        except (OverflowError, TypeError, ValueError) as exc:
            self.unencodable.append(cmd)
            raise UnencodableCommand(str(exc)) from None
        self.last = seq
        self.commands.append(cmd)

    def release(self) -> None:
        if self.last > self.durable_seq:
            self.durable_seq = self.last
            for fn in self.listeners:
                fn(self.last)

    async def wait_durable(self, seq: int) -> None:
        self.release()

    def add_listener(self, fn: Callable[[int], None]) -> None:
        self.listeners.append(fn)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


class Rig:
    """A Gateway with an encoding journal, a logged-in broker and operator session, and
    the replies it sent (captured instead of written to sockets)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        base = demo_settings()
        limits = Limits(requests_per_s=1_000_000.0, request_burst=1_000_000, orders_per_s=1_000_000.0, order_burst=1_000_000)
        self.settings = replace(base, limits=limits)
        self.journal = EncodingJournal()
        self.gw = Gateway(self.settings, Engine(self.settings.market), self.journal)
        self.replies: list[dict[str, Any]] = []
        self.gw.outbound.send_one = lambda session, msg: self.replies.append(msg)  # type: ignore[method-assign]
        loop.run_until_complete(self.gw.bootstrap())
        self.broker = Session(limits, member="broker-a")
        self.operator = Session(limits, admin=True, operator=True)
        self.ids = iter(range(1, 1 << 62))

    def call(self, method: str, params: dict[str, Any], admin: bool, binary: bool) -> dict[str, Any]:
        req_id = next(self.ids)
        envelope = {"jsonrpc": "2.0", "id": req_id, "method": method, "params": params}
        try:
            frame = msgspec.msgpack.encode(envelope) if binary else msgspec.json.encode(envelope)
        except OverflowError:  # MessagePack cannot even carry it: a client can only send it as JSON
            binary, frame = False, msgspec.json.encode(envelope)
        codec = protocol.MSGPACK if binary else protocol.JSON
        session = self.operator if admin else self.broker
        session.binary = binary
        if method == "session.login":  # logging in again on a logged-in session is INVALID_STATE: use a fresh one
            session = Session(self.settings.limits, admin=admin, binary=binary)
        elif method == "session.logout":  # keep the shared sessions logged in
            session = Session(self.settings.limits, admin=admin, binary=binary, member=None if admin else "broker-a", operator=admin)
        self.loop.run_until_complete(self._deliver(session, codec, frame))
        mine = [r for r in self.replies if r.get("id") == req_id]
        assert len(mine) == 1, f"{method}: expected one reply, got {mine}"
        self.replies.clear()
        return mine[0]

    async def _deliver(self, session: Session, codec: protocol.Codec, frame: bytes) -> None:
        # As websockets hands them over: text frames (JSON) as str, binary frames as bytes.
        pending = self.gw.connections.on_frame(session, codec, frame if codec.binary else frame.decode())
        if pending is not None:
            await pending
        for _ in range(3):  # commands: durable, then replied; reads queue behind them
            self.journal.release()
            await asyncio.sleep(0)


# ----------------------------------------------------------------------------- value strategies


def _edges(*points: int) -> list[int]:
    return sorted({p + d for p in points for d in (-1, 0, 1)})


_INT_EDGES = _edges(
    0, ranges.PRICE.hi, ranges.QUANTITY.hi, -ranges.QUANTITY.hi, ranges.CASH.hi, ranges.VINTAGE.hi, ranges.LOOKBACK_DAYS.hi,
    ranges.INT64_MAX, -ranges.INT64_MAX - 1, 2**64 - 1, 10**12, -(10**12),
)  # fmt: skip


def _int_strategy(t: mi.IntType) -> st.SearchStrategy[int]:
    near = [v for v in _edges(*(b for b in (t.ge, t.le) if b is not None))]
    return st.one_of(st.sampled_from(sorted(set(near + _INT_EDGES))), st.integers(), st.integers(-(10**25), 10**25))


def _fen_strings() -> st.SearchStrategy[str]:
    bounds = [ranges.PRICE.hi, ranges.CASH.hi]
    exact = [format_fen(v) for b in bounds for v in (b - 1, b, b + 1)]
    exact += ["99999999999999999999", "9" * 24, "0", "0.00", "0.01", "0.001", "-1", "1e9", "60.00", "60.5", "18446744073709551616"]
    return st.one_of(st.sampled_from(exact), st.from_regex(r"-?[0-9]{1,22}(\.[0-9]{0,3})?", fullmatch=True))


def _id_strings() -> st.SearchStrategy[str]:
    exact = ["0", "1", "2", "9" * 18, "1" + "0" * 18, str(ranges.INT64_MAX), str(2**63), str(2**64), "9" * 24, "-1", "x"]
    return st.one_of(st.sampled_from(exact), st.from_regex(r"[0-9]{1,24}", fullmatch=True))


_DECIMAL_FIELDS = {"price", "cash", "reserve_price", "cap"}
_ID_FIELDS = {"order_id", "auction_id", "bid_id", "block_id", "certificate_id"}
_NAMES = {  # plausible values of the other strings, so requests get past "unknown X" to the numbers
    "account": ["A-001", "A-002", "B-001", "nope"],
    "counterparty_account": ["B-001", "A-002"],
    "instrument": ["SHEA", "CCER", "SHCER", "NOPE"],
    "member": ["broker-a", "broker-b", "nope"],
    "client_order_id": ["c-1", "c-2"],
    "client_bid_id": ["b-1"],
    "beneficiary": ["someone"],
    "event_id": ["ev-1"],
    "name": ["An event"],
    "key_id": ["k-new"],
    "secret": ["a-long-enough-secret"],
    "channels": ["trades.SHEA"],
}


def _value(name: str, t: Any) -> st.SearchStrategy[Any]:
    if isinstance(t, mi.UnionType):
        return st.one_of(*(_value(name, u) for u in t.types))
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.IntType):
        return _int_strategy(t)
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, mi.StrType):
        if name in _DECIMAL_FIELDS:
            return _fen_strings()
        if name in _ID_FIELDS:
            return _id_strings()
        return st.sampled_from(_NAMES.get(name, ["x"]))
    if isinstance(t, mi.ListType):
        return st.lists(_value(name, t.item_type), max_size=3)
    if isinstance(t, mi.DictType):
        return st.dictionaries(_value(name, t.key_type), _value(name, t.value_type), max_size=3)
    if isinstance(t, mi.StructType):
        return _params(t)
    raise AssertionError(f"no strategy for {name}: {t}")


def _params(info: mi.StructType) -> st.SearchStrategy[dict[str, Any]]:
    required = {f.name: _value(f.name, f.type) for f in info.fields if f.required}
    optional = {f.name: _value(f.name, f.type) for f in info.fields if not f.required}
    return st.fixed_dictionaries(required, optional=optional)


def _methods() -> Iterator[tuple[str, bool]]:
    for name in TRADING_METHODS:
        yield name, False
    for name in ADMIN_METHODS:
        if name not in TRADING_METHODS:
            yield name, True


SPECIFIC = (protocol.INVALID_PARAMS, protocol.METHOD_NOT_FOUND, protocol.INVALID_REQUEST)


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield Rig(loop)
    loop.close()
    asyncio.set_event_loop(None)


@pytest.mark.parametrize(("method", "admin"), list(_methods()))
def test_every_method_at_and_beyond_every_boundary(rig: Rig, method: str, admin: bool, caplog: pytest.LogCaptureFixture) -> None:
    table = ADMIN_METHODS if admin else TRADING_METHODS
    strategy = _params(mi.type_info(table[method].params))  # type: ignore[arg-type]

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(params=strategy, binary=st.booleans())
    def run(params: dict[str, Any], binary: bool) -> None:
        reply = rig.call(method, params, admin, binary)
        if "error" in reply:
            err = reply["error"]
            assert err["code"] != protocol.INTERNAL_ERROR, f"{method} {params}: {err}"
            assert err["code"] in SPECIFIC or 1000 <= err["code"] < 1999, f"{method} {params}: unspecific {err}"
            assert err.get("data", {}).get("reason"), f"{method} {params}: no reason in {err}"
        assert not rig.journal.unencodable, f"{method} {params}: built an unencodable command {rig.journal.unencodable}"

    with caplog.at_level(logging.ERROR, logger="carbonx"):
        run()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no exception may escape to the log"


@pytest.mark.parametrize("method", ["order.place", "order.amend", "block.propose", "auction.bid"])
def test_the_reported_attack_gets_invalid_price_from_the_wire(rig: Rig, method: str) -> None:
    params = {
        "order.place": {"account": "A-001", "instrument": "SHEA", "side": "buy", "quantity": 1},
        "order.amend": {"account": "A-001", "order_id": "1"},
        "block.propose": {"account": "A-001", "instrument": "SHEA", "side": "buy", "quantity": 100_000, "counterparty_account": "B-001"},
        "auction.bid": {"auction_id": "424242", "account": "A-001", "quantity": 1},
    }[method]
    seq = rig.gw.engine.seq
    reply = rig.call(method, {**params, "price": "99999999999999999999"}, admin=False, binary=True)
    assert reply["error"]["data"] == {"reason": R.INVALID_PRICE, "field": "price"}
    assert reply["error"]["message"] == "price must be at most 1000000.00"
    assert rig.gw.engine.seq == seq, "refused before the engine: no sequence number used"


# ----------------------------------------------------------------------------- wire parsers at the edges


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1000000.00", ranges.PRICE.hi), ("999999.99", ranges.PRICE.hi - 1), ("0", 0), ("0.01", 1)],
)
def test_parse_price_accepts_up_to_the_range(text: str, expected: int) -> None:
    assert protocol.parse_price(text) == expected


@pytest.mark.parametrize("text", ["1000000.01", "99999999999999999999", "18446744073709551616"])
def test_parse_price_refuses_beyond_the_range(text: str) -> None:
    with pytest.raises(protocol.RpcError) as exc:
        protocol.parse_price(text, "reserve.cap")
    assert exc.value.data == {"reason": R.INVALID_PRICE, "field": "reserve.cap"}


def test_parse_money_bounds() -> None:
    assert protocol.parse_money(format_fen(ranges.CASH.hi), "cash") == ranges.CASH.hi
    with pytest.raises(protocol.RpcError) as exc:
        protocol.parse_money(format_fen(ranges.CASH.hi + 1), "cash")
    assert exc.value.data == {"reason": R.INVALID_AMOUNT, "field": "cash"}


@given(st.from_regex(r"[0-9]{1,30}", fullmatch=True))
def test_parse_id_is_always_in_range(text: str) -> None:
    n = protocol.parse_id(text)
    assert n == -1 or n in ranges.ID


# ----------------------------------------------------------------------------- the journal guarantee


def test_a_command_integer_without_a_range_cannot_load() -> None:
    """engine.ranges builds its checks at import and refuses an integer field it has no range for."""

    class Sneaky(Command, tag="sneaky", kw_only=True):
        lots_of: int

    with pytest.raises(TypeError, match=r"Sneaky\.lots_of is an integer without a range"):
        ranges._checks_for(Sneaky)
    assert [c[0] for c in ranges.CHECKS[AuctionCreate]] == [
        "ts", "vintage", "quantity", "reserve_price", "reserve_lookback_days", "reserve_factor_pct", "reserve_cap", "caps",
        "min_lot", "start_ts", "end_ts", "seed",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "cmd",
    [
        PlaceOrder(ts=1, member="broker-a", account="A-001", instrument="SHEA", side="buy", price=10**20, quantity=1),
        PlaceOrder(ts=1, member="broker-a", account="A-001", instrument="SHEA", side="buy", price=6000, quantity=-(2**70)),
        Deposit(ts=1, account="A-001", cash=10**16),
    ],
)
def test_the_engine_refuses_out_of_range_commands_itself(cmd: AnyCommand) -> None:
    """Cluster mode and replay feed the engine commands that never passed the wire parser."""
    eng = Engine(demo_settings().market)
    events = eng.apply(cmd)
    assert len(events) == 1 and events[0].reason in (R.INVALID_PRICE, R.INVALID_QUANTITY, R.INVALID_AMOUNT)


def test_a_deposit_cannot_push_a_balance_out_of_range() -> None:
    eng = Engine(demo_settings().market)
    from carbonx.engine.schema import CreateAccount, CreateMember

    eng.apply(CreateMember(ts=1, member="m", key_id="k", secret_hash="scrypt$00$00"))
    eng.apply(CreateAccount(ts=1, account="X", member="m", type="institution"))
    assert eng.apply(Deposit(ts=1, account="X", cash=ranges.CASH.hi))[0].available == ranges.CASH.hi
    rej = eng.apply(Deposit(ts=1, account="X", cash=1))[0]
    assert rej.reason == R.INVALID_AMOUNT and eng.accounts["X"].available == ranges.CASH.hi
    eng.apply(Deposit(ts=1, account="X", instrument="CCER", quantity=ranges.QUANTITY.hi))
    rej = eng.apply(Deposit(ts=1, account="X", instrument="CCER", quantity=1))[0]
    assert rej.reason == R.INVALID_AMOUNT


async def test_local_journal_append_of_an_unencodable_command_appends_nothing(tmp_path: Path) -> None:
    journal = LocalJournal(tmp_path, policy="none")
    await journal.start()
    journal.append(1, Deposit(ts=1, account="A-001", cash=5))
    with pytest.raises(UnencodableCommand):
        journal.append(2, Deposit(ts=2, account="A-001", cash=10**30))
    journal.append(2, Deposit(ts=3, account="A-001", cash=7))  # the same seq: nothing was taken
    await journal.close()
    records = [(seq, cmd.cash) for seq, cmd in read_records(tmp_path)]
    assert records == [(1, 5), (2, 7)]


async def test_sequencer_refuses_an_unencodable_command_before_applying_it() -> None:
    """Defence in depth: whatever the bounds miss, the journal's encoder refuses before the engine applies."""
    journal = ManualJournal()

    def strict(seq: int, cmd: Any) -> None:
        try:
            encode_frame(seq, cmd)
        except OverflowError as exc:
            raise UnencodableCommand(str(exc)) from None
        ManualJournal.append(journal, seq, cmd)

    journal.append = strict  # type: ignore[method-assign]
    eng = Engine(demo_settings().market)
    fatal: list[BaseException] = []
    sq = Sequencer(eng, journal, sink=None, latency_durable=None, latency_reply=None, on_fatal=fatal.append)  # type: ignore[arg-type]
    bad = Deposit(ts=1, account="A-001", cash=10**30)
    checker = ranges.CHECKERS[Deposit]
    ranges.CHECKERS[Deposit] = lambda cmd: None  # simulate a range the bounds forgot
    try:
        with pytest.raises(protocol.RpcError) as exc:
            sq.submit(bad)
    finally:
        ranges.CHECKERS[Deposit] = checker
    assert exc.value.code == protocol.INVALID_PARAMS and eng.seq == 0 and not journal.appended and not fatal
    assert sq.submit(Deposit(ts=2, account="A-001", cash=1)) == 1, "the next command gets the seq the refused one did not use"


# ----------------------------------------------------------------------------- configuration


def test_every_number_in_server_and_limits_has_a_range() -> None:
    for cls, table in ((ServerSettings, "server"), (Limits, "limits"), (ClusterSettings, "cluster")):
        numeric = {f.name for f in fields(cls) if type(getattr(cls(), f.name)) in (int, float)}
        assert numeric == set(RANGES[table]), f"[{table}] numbers and their ranges differ"


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("[limits]\nmax_connections = 10000000\n", "limits.max_connections: 10000000 is outside the range 1 to 1000000"),
        ("[limits]\nrequest_burst = 0\n", "limits.request_burst: 0 is outside the range 1 to 1000000"),
        ("[limits]\nmax_batch = 1001\n", "limits.max_batch: 1001 is outside the range 1 to 1000"),
        ("[server]\nport = 70000\n", "server.port: 70000 is outside the range 0 to 65535"),
        ("[server]\ntick_s = 0.0\n", "server.tick_s: 0.0 is outside the range 0.01 to 60"),
        ("[server]\nsegment_bytes = 1\n", "server.segment_bytes: 1 is outside the range 65536 to 68719476736"),
    ],
)
def test_gateway_settings_out_of_range_name_the_key_and_the_range(snippet: str, message: str) -> None:
    text = DEMO_TEXT.replace("[server]", "[server-original]", 0) + "\n"
    with pytest.raises(SettingsError) as exc:
        parse_settings(_with_table(text, snippet))
    assert str(exc.value) == message


def _with_table(text: str, snippet: str) -> str:
    """The demo configuration with one key of a table overridden (the table exists in the demo)."""
    table, line = snippet.strip().split("\n")
    key = line.split("=")[0].strip()
    out, inside, done = [], False, False
    for row in text.splitlines():
        if row.startswith("["):
            inside = row.strip() == table
        if inside and row.split("=")[0].strip() == key:
            continue
        out.append(row)
        if row.strip() == table and not done:
            out.append(line)
            done = True
    assert done, table
    return "\n".join(out) + "\n"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'cash = "10000000.00"',
            'cash = "99999999999999999999"',
            "account[0].cash: 99999999999999999999.00 is outside the range 0.00 to 10000000000000.00",
        ),
        ("vintages = [2024, 2025, 2026]", "vintages = [2024, 10000]", "instrument SHEA.vintages[1]: 10000 is outside the range 1 to 9999"),
    ],
)
def test_config_out_of_range_names_the_key_and_the_range(old: str, new: str, message: str) -> None:
    assert old in DEMO_TEXT
    with pytest.raises(ValueError) as exc:
        parse_settings(DEMO_TEXT.replace(old, new, 1))
    assert str(exc.value) == message


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("reference_price", '"99999999999999999999"', "reference_price: 99999999999999999999.00 is outside the range 0.01 to 1000000.00"),
        ("tick", '"1000000.01"', "tick: 1000000.01 is outside the range 0.01 to 1000000.00"),
        ("lot", "0", "lot: 0 t is outside the range 1 t to 1000000000 t"),
        ("max_qty", "1000000001", "max_qty: 1000000001 t is outside the range 1 t to 1000000000 t"),
        ("block_min_qty", str(2**64), f"block_min_qty: {2**64} t is outside the range 1 t to 1000000000 t"),
    ],
)
def test_market_config_out_of_range(key: str, value: str, message: str) -> None:
    from carbonx.engine.config import ConfigError, load_market_text

    text = f'[[instrument]]\nsymbol = "X"\nreference_price = "60.00"\n{key} = {value}\n'
    if key == "reference_price":
        text = f'[[instrument]]\nsymbol = "X"\nreference_price = {value}\n'
    with pytest.raises(ConfigError) as exc:
        load_market_text(text)
    assert str(exc.value) == f"instrument X.{message}"


def test_market_config_utc_offset_and_bidder_caps() -> None:
    from carbonx.engine.config import ConfigError, load_market_text

    base = '[[instrument]]\nsymbol = "X"\nreference_price = "60.00"\n'
    with pytest.raises(ConfigError, match=r"calendar.utc_offset_minutes: 100000 is outside the range -720 to 840"):
        load_market_text("[calendar]\nutc_offset_minutes = 100000\n" + base)
    with pytest.raises(ConfigError, match=r"auction.bidder_caps.institution: -1 t is outside the range 0 t to 1000000000 t"):
        load_market_text("[auction]\nbidder_caps = { institution = -1 }\n" + base)


@pytest.mark.parametrize(
    ("method", "admin", "params", "reason", "field"),
    [
        ("order.place", False, {"account": "A-001", "instrument": "SHEA", "side": "buy", "price": "60.00", "quantity": 10**10}, R.INVALID_QUANTITY, "quantity"),
        ("retire", False, {"account": "A-001", "instrument": "SHEA", "quantity": -(10**12), "purpose": "public_welfare", "beneficiary": "x"}, R.INVALID_QUANTITY, "quantity"),
        ("admin.account.deposit", True, {"account": "A-001", "instrument": "CCER", "quantity": 10**9 + 1}, R.INVALID_AMOUNT, "quantity"),
        ("admin.auction.create", True, {"instrument": "SHEA", "quantity": 10, "reserve_price": "60.00", "caps": {"institution": 10**11}}, R.INVALID_QUANTITY, "caps"),
        ("admin.auction.create", True, {"instrument": "SHEA", "quantity": 10, "reserve_price": "60.00", "min_lot": 10**12}, R.INVALID_LOT, "min_lot"),
        ("admin.event.create", True, {"event_id": "e", "name": "n", "footprint": 10**12}, R.INVALID_QUANTITY, "footprint"),
    ],
)  # fmt: skip
def test_integers_beyond_their_range_get_the_fields_reason_before_a_seq_is_spent(
    rig: Rig, method: str, admin: bool, params: dict[str, Any], reason: str, field: str
) -> None:
    seq = rig.gw.engine.seq
    reply = rig.call(method, params, admin=admin, binary=False)
    assert reply["error"]["data"] == {"reason": reason, "field": field}, reply
    assert rig.gw.engine.seq == seq
