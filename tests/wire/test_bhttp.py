"""Binary HTTP (RFC 9292): the RFC's examples byte for byte, round trips, and every malformed input
refused with its own typed error (and nothing but :class:`bhttp.BinaryHttpError`)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sotto.errors import DecodeError
from sotto.wire import bhttp
from sotto.wire.bhttp import (
    InformationalResponse,
    InvalidControlDataError,
    InvalidFieldError,
    InvalidFramingError,
    Limits,
    MessageLimitError,
    NonZeroPaddingError,
    Request,
    Response,
    TruncatedMessageError,
)
from tests.vectors.ohttp import load

EXAMPLES = load("rfc9292_examples")["examples"]


def _fields(pairs: list[list[str]]) -> tuple[bhttp.Field, ...]:
    return tuple((name.encode(), value.encode()) for name, value in pairs)


def _expected(example: dict[str, Any]) -> Request | Response:
    m = example["message"]
    if example["kind"] == "request":
        return Request(
            m["method"].encode(),
            m["scheme"].encode(),
            m["authority"].encode(),
            m["path"].encode(),
            _fields(m["headers"]),
            m["content"].encode(),
            _fields(m["trailers"]),
        )
    return Response(
        m["status"],
        _fields(m["headers"]),
        m["content"].encode(),
        _fields(m["trailers"]),
        tuple(InformationalResponse(i["status"], _fields(i["headers"])) for i in m["informational"]),
    )


def _decode(data: bytes) -> Request | Response:
    try:
        return bhttp.decode_request(data)
    except InvalidFramingError:
        return bhttp.decode_response(data)


def _encode(message: Request | Response, **options: Any) -> bytes:
    if isinstance(message, Request):
        return bhttp.encode_request(message, **options)
    return bhttp.encode_response(message, **options)


# ---------------------------------------------------------------------------------------- RFC 9292 §5
@pytest.mark.parametrize("example", EXAMPLES, ids=[e["figure"] for e in EXAMPLES])
def test_rfc9292_examples_decode_to_the_http_message_they_show(example: dict[str, Any]) -> None:
    assert _decode(bytes.fromhex(example["hex"])) == _expected(example)


@pytest.mark.parametrize("example", EXAMPLES, ids=[e["figure"] for e in EXAMPLES])
def test_rfc9292_examples_encode_byte_for_byte(example: dict[str, Any]) -> None:
    encoded = _encode(_expected(example), indeterminate=example["framing"] >= 2, padding=example["padding"])
    assert encoded.hex() == example["hex"]


def test_the_known_length_request_example_may_lose_its_last_two_bytes() -> None:
    # RFC 9292 §5.1: content and trailer section, both empty, can each be removed.
    data = bytes.fromhex(EXAMPLES[0]["hex"])
    whole = bhttp.decode_request(data)
    assert bhttp.decode_request(data[:-1]) == whole
    assert bhttp.decode_request(data[:-2]) == whole
    assert bhttp.encode_request(whole, truncate=True) == data[:-2]


def test_the_indeterminate_request_example_may_lose_twelve_bytes_and_no_more() -> None:
    # RFC 9292 §5.1: ten bytes of padding, then two empty parts: "anything up to 12 bytes".
    data = bytes.fromhex(EXAMPLES[1]["hex"])
    whole = bhttp.decode_request(data)
    for cut in range(1, 13):
        assert bhttp.decode_request(data[:-cut]) == whole
    with pytest.raises(TruncatedMessageError):
        bhttp.decode_request(data[:-13])


def test_the_rfc9458_request_truncated_after_its_control_data() -> None:
    data = bytes.fromhex(load("rfc9458_appendix_a")["request"])
    request = Request(b"GET", b"https", b"example.com", b"/")
    assert bhttp.decode_request(data) == request
    assert bhttp.encode_request(request, truncate=True) == data
    assert bhttp.decode_response(bytes.fromhex("0140c8")) == Response(200)


# ---------------------------------------------------------------------------------------- round trips
_TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
tokens = st.text(_TCHARS, min_size=1, max_size=20).map(str.encode)
visible = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40).map(str.encode)
values = st.binary(max_size=60).filter(
    lambda v: not (set(v) & {0, 10, 13}) and (not v or (v[0] not in b" \t" and v[-1] not in b" \t"))
)
fields = st.lists(st.tuples(tokens, values), max_size=6).map(tuple)
contents = st.binary(max_size=300)
requests = st.builds(
    Request,
    tokens,
    st.sampled_from([b"https", b"http", b"", b"x-sotto+1.0"]),
    visible,
    visible,
    fields,
    contents,
    fields,
)
responses = st.builds(
    Response,
    st.integers(200, 599),
    fields,
    contents,
    fields,
    st.lists(st.builds(InformationalResponse, st.integers(100, 199), fields), max_size=3).map(tuple),
)
options = st.fixed_dictionaries(
    {"indeterminate": st.booleans(), "truncate": st.booleans(), "padding": st.integers(0, 20)}
)


@given(requests, options)
def test_requests_round_trip_in_every_form(request: Request, opts: dict[str, Any]) -> None:
    assert bhttp.decode_request(bhttp.encode_request(request, **opts)) == request


@given(responses, options)
def test_responses_round_trip_in_every_form(response: Response, opts: dict[str, Any]) -> None:
    assert bhttp.decode_response(bhttp.encode_response(response, **opts)) == response


@given(st.binary(max_size=400))
def test_decoders_raise_only_binary_http_errors(data: bytes) -> None:
    for decode in (bhttp.decode_request, bhttp.decode_response):
        with contextlib.suppress(bhttp.BinaryHttpError):
            decode(data)


@given(st.one_of(requests, responses), options, st.data())
def test_a_cut_or_flipped_message_decodes_or_raises_a_binary_http_error(
    message: Request | Response, opts: dict[str, Any], data: st.DataObject
) -> None:
    encoded = bytearray(_encode(message, **opts))
    decode = bhttp.decode_request if isinstance(message, Request) else bhttp.decode_response
    cut = data.draw(st.integers(0, len(encoded)))
    index = data.draw(st.integers(0, len(encoded) - 1))
    flipped = bytearray(encoded)
    flipped[index] ^= data.draw(st.integers(1, 255))
    for candidate in (bytes(encoded[:cut]), bytes(flipped)):
        with contextlib.suppress(bhttp.BinaryHttpError):
            decode(candidate)


# ---------------------------------------------------------------------------------------- varints
@pytest.mark.parametrize(
    ("value", "size"),
    [(0, 1), (63, 1), (64, 2), (16383, 2), (16384, 4), (2**30 - 1, 4), (2**30, 8), (bhttp.MAX_VARINT, 8)],
)
def test_varints_use_the_shortest_form_and_round_trip(value: int, size: int) -> None:
    encoded = bhttp.encode_varint(value)
    assert len(encoded) == size
    assert bhttp.decode_varint(encoded) == (value, size)


def test_varints_outside_their_range_are_refused() -> None:
    with pytest.raises(ValueError, match="2\\^62"):
        bhttp.encode_varint(bhttp.MAX_VARINT + 1)
    with pytest.raises(ValueError, match="negative"):
        bhttp.encode_varint(-1)


def test_longer_varints_than_needed_are_accepted() -> None:
    # RFC 9292 §3: integers need not use the fewest bytes; here framing 0 as two bytes, 3 as eight.
    assert bhttp.decode_request(bytes.fromhex("4000") + bytes.fromhex(EXAMPLES[0]["hex"])[1:])
    assert bhttp.decode_varint(bytes.fromhex("c000000000000003")) == (3, 8)


@pytest.mark.parametrize("data", [b"", b"\x40", b"\x80\x00\x00", b"\xc0" + bytes(6)])
def test_a_cut_varint_is_truncated(data: bytes) -> None:
    with pytest.raises(TruncatedMessageError):
        bhttp.decode_varint(data)
    with pytest.raises(TruncatedMessageError):
        bhttp.decode_request(data)


# ---------------------------------------------------------------------------------------- malformed
GET = b"\x00\x03GET\x05https\x00\x01/"
"""A known-length GET's framing and control data; tests append the rest."""


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x00\x05GET", TruncatedMessageError),  # method length past the end
        (b"\x00\x03GET\x05htt", TruncatedMessageError),  # scheme past the end
        (GET + b"\x05\x04host", TruncatedMessageError),  # header section past the end
        (GET + b"\x06\x04host\x05a", TruncatedMessageError),  # a value crosses its section's end
        (GET + b"\x00\x05abc", TruncatedMessageError),  # content past the end
        (GET + b"\x00\x00\x03\x01a", TruncatedMessageError),  # trailers past the end
        (b"\x02\x03GET\x05https\x00\x01/\x04host", TruncatedMessageError),  # cut inside a field line
        (b"\x02\x03GET\x05https\x00\x01/\x00\x02ab", TruncatedMessageError),  # content without its end
        (b"\x02\x03GET\x05https\x00\x01/\x00\x02ab\x00\x04host\x00", TruncatedMessageError),  # trailers
        (GET + b"\x00\x00\x00\x00\x01", NonZeroPaddingError),
        (GET + b"\x00\x00\x00" + b"\x00" * 50 + b"\xff", NonZeroPaddingError),
        (b"\x04" + GET[1:], InvalidFramingError),
        (b"\x01" + GET[1:], InvalidFramingError),  # a response's indicator
        (b"\x00\x00\x05https\x00\x01/", InvalidControlDataError),  # empty method
        (b"\x00\x03G T\x05https\x00\x01/", InvalidControlDataError),
        (b"\x00\x03GET\x051http\x00\x01/", InvalidControlDataError),
        (b"\x00\x03GET\x05https\x00\x02/ ", InvalidControlDataError),  # space in the path
        (b"\x00\x03GET\x05https\x00\x02/\x7f", InvalidControlDataError),
        (b"\x00\x03GET\x05https\x02a\n\x01/", InvalidControlDataError),  # newline in the authority
        (b"\x00\x03GET\x05https\x00\x02/\xc3", InvalidControlDataError),  # not ASCII
        (GET + b"\x02\x00\x00", InvalidFieldError),  # empty name
        (GET + b"\x05\x03a b\x00", InvalidFieldError),
        (GET + b"\x05\x01a\x02\r\n", InvalidFieldError),
        (GET + b"\x05\x01a\x02\x00b", InvalidFieldError),
        (GET + b"\x05\x01a\x02 b", InvalidFieldError),
        (GET + b"\x05\x01a\x02b\t", InvalidFieldError),
        (GET + b"\x09\x07:method\x00", InvalidFieldError),
        (GET + b"\x09\x07:status\x00", InvalidFieldError),
        (GET + b"\x0e\x01a\x00\x09:protocol\x00", InvalidFieldError),  # pseudo after regular
        (GET + b"\x00\x00\x0b\x09:protocol\x00", InvalidFieldError),  # pseudo in trailers
        (GET + b"\x03\x01:\x00", InvalidFieldError),  # ":" alone
        (b"\x02\x03GET\x05https\x00\x01/\x01\x00\x00\x00", InvalidFieldError),  # name "\x00"
    ],
)
def test_malformed_requests_raise_their_typed_error(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        bhttp.decode_request(data)
    assert issubclass(error, bhttp.BinaryHttpError)
    assert issubclass(error, DecodeError)


def test_a_well_placed_extension_pseudo_field_is_accepted() -> None:
    request = bhttp.decode_request(GET + b"\x0e\x09:protocol\x00\x01a\x00")
    assert request.headers == ((b":protocol", b""), (b"a", b""))


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x00" + GET[1:], InvalidFramingError),  # a request's indicator
        (b"\x01", TruncatedMessageError),  # no status at all
        (b"\x01\x40\x66", TruncatedMessageError),  # an informational response without its fields
        (b"\x01\x40\x66\x00", TruncatedMessageError),  # informational, then nothing final
        (b"\x01\x40\x63", InvalidControlDataError),  # 99
        (b"\x01\x42\x58", InvalidControlDataError),  # 600
        (b"\x01\x00", InvalidControlDataError),
        (b"\x01\x40\xc8\x03\x01a\x05", TruncatedMessageError),  # a value crosses the section end
        (b"\x01\x40\xc8\x00\x00\x0a\x08:foo-bar\x00", InvalidFieldError),  # pseudo in trailers
        (b"\x03\x40\xc8\x00\x01", TruncatedMessageError),  # a chunk without its byte
        (b"\x01\x40\xc8\x00\x00\x00\x07", NonZeroPaddingError),
    ],
)
def test_malformed_responses_raise_their_typed_error(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        bhttp.decode_response(data)


def test_a_response_example_with_one_more_informational_response_than_allowed() -> None:
    data = bytes.fromhex(EXAMPLES[2]["hex"])
    assert bhttp.decode_response(data, Limits(max_informational=2))
    with pytest.raises(MessageLimitError, match="informational"):
        bhttp.decode_response(data, Limits(max_informational=1))


@pytest.mark.parametrize(
    ("limits", "match"),
    [
        (Limits(max_message=20), "message of"),
        (Limits(max_control=2), "method"),
        (Limits(max_field_section=3), "header section"),
        (Limits(max_fields=0), "lines in the header"),
        (Limits(max_content=3), "content"),
    ],
)
def test_each_limit_holds(limits: Limits, match: str) -> None:
    request = Request(b"GET", b"https", b"", b"/", ((b"host", b"x"),), b"body")
    for indeterminate in (False, True):
        data = bhttp.encode_request(request, indeterminate=indeterminate)
        assert bhttp.decode_request(data) == request
        with pytest.raises(MessageLimitError, match=match):
            bhttp.decode_request(data, limits)


def test_a_huge_declared_length_is_refused_by_the_limit_before_anything_is_read() -> None:
    huge = bhttp.encode_varint(bhttp.MAX_VARINT)
    for data in (b"\x00" + huge, GET + huge, GET + b"\x00" + huge, b"\x02" + GET[1:] + b"\x00" + huge):
        with pytest.raises(MessageLimitError):
            bhttp.decode_request(data)
    with pytest.raises(TruncatedMessageError):
        bhttp.decode_request(GET + b"\x00" + bhttp.encode_varint(1000), Limits(max_content=bhttp.MAX_VARINT))


def test_decoders_take_bytes_only() -> None:
    with pytest.raises(TypeError):
        bhttp.decode_request(bytearray(GET))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- encoding
@pytest.mark.parametrize(
    "request_",
    [
        Request(b"", b"https", b"", b"/"),
        Request(b"GET", b"https", b"", b"/ x"),
        Request(b"GET", b"https", b"", b"/", ((b"a", b"b\r\nx: y"),)),
        Request(b"GET", b"https", b"", b"/", ((b":path", b"/"),)),
        Request(b"GET", b"https", b"", b"/", (), b"", ((b":protocol", b"x"),)),
        Request(b"GET", b"https", b"", b"/", ((b"bad name", b""),)),
    ],
)
def test_the_encoder_refuses_what_the_decoder_would(request_: Request) -> None:
    with pytest.raises(ValueError, match="cannot encode"):
        bhttp.encode_request(request_)


@pytest.mark.parametrize(
    "response",
    [Response(199), Response(600), Response(200, informational=(InformationalResponse(200),))],
)
def test_the_encoder_refuses_status_codes_out_of_place(response: Response) -> None:
    with pytest.raises(ValueError, match="status code"):
        bhttp.encode_response(response)


def test_negative_padding_is_refused() -> None:
    with pytest.raises(ValueError, match="padding"):
        bhttp.encode_request(Request(b"GET", b"https", b"", b"/"), padding=-1)


def test_repr_shows_no_path_field_value_or_content() -> None:
    request = Request(
        b"POST", b"https", b"relay", b"/v1/mailboxes/SECRETID", ((b"x-token", b"TOKEN"),), b"BODY"
    )
    response = Response(200, ((b"x-token", b"TOKEN"),), b"BODY", informational=(InformationalResponse(103),))
    for text in (repr(request), repr(response)):
        assert "SECRETID" not in text
        assert "TOKEN" not in text
        assert "BODY" not in text
    assert repr(request) == "Request(POST, 1 header fields, 4 B content, 0 trailer fields)"
