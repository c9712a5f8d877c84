"""Wire conversion: decimal strings, ids, params validation, envelopes, execution reports."""

from __future__ import annotations

import msgspec
import pytest

from carbonx.engine import reasons as R
from carbonx.engine.schema import ExecReport, Reject
from carbonx.gateway import protocol
from carbonx.gateway.protocol import JSON, MSGPACK, RpcError


def test_avg_price_rounds_half_up_to_the_fen() -> None:
    assert protocol.avg_price(0, 0) is None
    assert protocol.avg_price(6000 * 3, 3) == "60.00"
    # 60.00 x 1 + 60.01 x 1 = 120.01 / 2 = 60.005 -> 60.01 (half up)
    assert protocol.avg_price(6000 + 6001, 2) == "60.01"
    # 60.00 x 2 + 60.01 x 1 = 180.01 / 3 = 60.00333 -> 60.00
    assert protocol.avg_price(2 * 6000 + 6001, 3) == "60.00"


@pytest.mark.parametrize(
    ("text", "reason"), [("60.001", R.INVALID_TICK), ("abc", R.INVALID_PRICE), ("-1", R.INVALID_PRICE), ("1e3", R.INVALID_PRICE)]
)
def test_bad_prices_are_business_rejects_naming_the_field(text: str, reason: str) -> None:
    with pytest.raises(RpcError) as exc:
        protocol.parse_price(text)
    assert exc.value.data == {"reason": reason, "field": "price"}
    assert exc.value.code == protocol.reason_code(reason)


def test_prices_parse_to_fen() -> None:
    assert protocol.parse_price("60") == 6000
    assert protocol.parse_price("60.5") == 6050
    assert protocol.parse_price("0.01") == 1


@pytest.mark.parametrize(("text", "expected"), [("17", 17), ("0", -1), ("abc", -1), ("-3", -1), ("1" * 19, -1), ("١٢", -1)])
def test_ids_that_are_not_positive_ints_are_unknown(text: str, expected: int) -> None:
    assert protocol.parse_id(text) == expected


# The wire codes as they have been since v1 (code = 1000 + position): clients hard-code them.
WIRE_CODES = (
    "PRICE_OUT_OF_BAND",
    "INVALID_TICK",
    "INVALID_PRICE",
    "INVALID_QUANTITY",
    "INSUFFICIENT_FUNDS",
    "INSUFFICIENT_HOLDINGS",
    "MARKET_CLOSED",
    "INSTRUMENT_HALTED",
    "NOT_ELIGIBLE",
    "HOLDING_LIMIT",
    "ACCOUNT_BLOCKED",
    "UNKNOWN_ORDER",
    "DUPLICATE_CLIENT_ORDER_ID",
    "RATE_LIMITED",
    "UNKNOWN_INSTRUMENT",
    "NOT_AUTHORIZED",
    "NOT_AUTHENTICATED",
    "POST_ONLY_WOULD_CROSS",
    "INVALID_ORDER",
    "ORDER_NOT_AMENDABLE",
    "NO_LIQUIDITY",
    "T1_RESALE",
    "BLOCK_SIZE_REQUIRED",
    "UNKNOWN_ACCOUNT",
    "UNKNOWN_MEMBER",
    "ALREADY_EXISTS",
    "INVALID_AMOUNT",
    "INVALID_STATE",
    "DAY_NOT_OPEN",
    "UNKNOWN_AUCTION",
    "AUCTION_NOT_OPEN",
    "BELOW_RESERVE",
    "BIDDER_CAP",
    "INVALID_LOT",
    "BIDS_IRREVOCABLE",
    "UNKNOWN_BID",
    "NO_REFERENCE_DATA",
    "UNKNOWN_BLOCK",
    "BLOCK_TOO_SMALL",
    "UNKNOWN_EVENT",
    "INVALID_PURPOSE",
    "TOO_MANY_CONNECTIONS",
    "TOO_MANY_SUBSCRIPTIONS",
    "UNKNOWN_CHANNEL",
    "SHUTTING_DOWN",
    "UNKNOWN_CERTIFICATE",
    "LOGIN_THROTTLED",
    "STORAGE_FULL",
)


def test_reason_codes_are_fixed_and_unique() -> None:
    assert [protocol.reason_code(name) for name in WIRE_CODES] == [1000 + i for i in range(len(WIRE_CODES))]
    assert protocol.reason_code("SOMETHING_NEW") == 1999


def test_every_engine_reason_has_a_code() -> None:
    names = [v for k, v in vars(R).items() if k.isupper() and isinstance(v, str)]
    assert [n for n in names if protocol.reason_code(n) == 1999] == []


def _req(params: object) -> protocol.Request:
    return JSON.request(msgspec.json.encode({"jsonrpc": "2.0", "id": 1, "method": "order.place", "params": params}).decode())


def test_unknown_params_field_is_rejected_with_its_name() -> None:
    params = {"account": "A", "instrument": "SHEA", "side": "buy", "price": "60", "quantity": 1, "prise": "61"}
    with pytest.raises(RpcError) as exc:
        JSON.params(_req(params), protocol.PlaceParams)
    assert exc.value.code == protocol.INVALID_PARAMS
    assert exc.value.data == {"reason": "INVALID_PARAMS", "field": "prise"}


def test_wrong_type_and_missing_field_name_the_field() -> None:
    with pytest.raises(RpcError) as exc:
        JSON.params(_req({"account": "A", "instrument": "SHEA", "side": "buy", "quantity": "1"}), protocol.PlaceParams)
    assert exc.value.data["field"] == "quantity"
    with pytest.raises(RpcError) as exc:
        JSON.params(_req({"instrument": "SHEA", "side": "buy", "quantity": 1}), protocol.PlaceParams)
    assert exc.value.data["field"] == "account"


def test_float_prices_and_overlong_strings_are_refused() -> None:
    with pytest.raises(RpcError) as exc:
        JSON.params(_req({"account": "A", "instrument": "SHEA", "side": "buy", "price": 60.5, "quantity": 1}), protocol.PlaceParams)
    assert exc.value.data["field"] == "price"
    with pytest.raises(RpcError) as exc:
        JSON.params(_req({"account": "A" * 65, "instrument": "SHEA", "side": "buy", "quantity": 1}), protocol.PlaceParams)
    assert exc.value.data["field"] == "account"
    with pytest.raises(RpcError):
        JSON.params(_req({"account": "A", "instrument": "SHEA", "side": "buy", "quantity": 10**13}), protocol.PlaceParams)


def test_missing_params_means_empty_object() -> None:
    req = JSON.request('{"jsonrpc":"2.0","id":1,"method":"ping"}')
    assert JSON.params(req, protocol.NoParams) == protocol.NoParams()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", protocol.PARSE_ERROR),
        ('{"jsonrpc":"2.0","id":1}', protocol.INVALID_REQUEST),
        ('{"jsonrpc":"1.0","id":1,"method":"ping"}', protocol.INVALID_REQUEST),
        ("[1,2]", protocol.INVALID_REQUEST),
    ],
)
def test_envelope_errors(frame: str, code: int) -> None:
    with pytest.raises(RpcError) as exc:
        JSON.request(frame)
    assert exc.value.code == code


def test_msgpack_codec_round_trip() -> None:
    frame = msgspec.msgpack.encode({"jsonrpc": "2.0", "id": "x", "method": "order.cancel", "params": {"account": "A", "order_id": "5"}})
    req = MSGPACK.request(frame)
    p = MSGPACK.params(req, protocol.OrderRefParams)
    assert (req.id, p.account, p.order_id) == ("x", "A", "5")
    assert msgspec.msgpack.decode(MSGPACK.encode(protocol.reply(1, {"a": "1.00"}))) == {"jsonrpc": "2.0", "id": 1, "result": {"a": "1.00"}}
    assert isinstance(JSON.encode(protocol.reply(1, {})), str)


def _report(**kw: object) -> ExecReport:
    base: dict[str, object] = dict(
        seq=9, ts=5, order_id=17, client_order_id="c1", member="M", account="A", instrument="SHEA", side="buy", type="limit",
        price=6050, quantity=10, exec_type="trade", status="partially_filled", cum_qty=4, leaves_qty=6, cum_notional=4 * 6050,
        last_qty=4, last_price=6050, trade_id=3,
    )  # fmt: skip
    base.update(kw)
    return ExecReport(**base)  # type: ignore[arg-type]


def test_execution_report_on_the_wire() -> None:
    out = protocol.exec_report(_report())
    assert out == {
        "order_id": "17", "client_order_id": "c1", "account": "A", "instrument": "SHEA", "side": "buy", "type": "limit",
        "price": "60.50", "quantity": 10, "time_in_force": "day", "exec_type": "trade", "status": "partially_filled",
        "cum_qty": 4, "leaves_qty": 6, "avg_price": "60.50", "last_qty": 4, "last_price": "60.50", "trade_id": "3", "seq": 9, "ts": 5,
    }  # fmt: skip
    assert out["quantity"] == out["cum_qty"] + out["leaves_qty"]
    new = protocol.exec_report(
        _report(exec_type="new", status="new", cum_qty=0, leaves_qty=10, cum_notional=0, last_qty=0, trade_id=0, type="market")
    )
    assert new["avg_price"] is None and new["price"] is None
    assert "last_qty" not in new and "trade_id" not in new


def test_reject_becomes_error_with_reason_field_and_seq() -> None:
    rej = Reject(
        seq=4, ts=1, command="place", reason=R.INSUFFICIENT_FUNDS, message="not enough cash", field="quantity", client_order_id="c9"
    )
    err = protocol.reject_error(rej).to_wire()
    assert err == {
        "code": protocol.reason_code(R.INSUFFICIENT_FUNDS),
        "message": "not enough cash",
        "data": {"reason": R.INSUFFICIENT_FUNDS, "field": "quantity", "seq": 4, "client_order_id": "c9"},
    }


def test_nested_field_errors_name_the_full_path() -> None:
    base = {"instrument": "SHEA", "quantity": 1}
    for reserve, field in (
        ({"lookback_days": 5, "factr": "1.2"}, "reserve.factr"),
        ({"factor": "1.2"}, "reserve.lookback_days"),
        ({"lookback_days": "5"}, "reserve.lookback_days"),
    ):
        req = JSON.request(
            msgspec.json.encode(
                {"jsonrpc": "2.0", "id": 1, "method": "admin.auction.create", "params": {**base, "reserve": reserve}}
            ).decode()
        )
        with pytest.raises(RpcError) as exc:
            JSON.params(req, protocol.AuctionCreateParams)
        assert exc.value.data["field"] == field
