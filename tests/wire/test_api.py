"""HTTP bodies: byte fields are strict base64url of exact lengths and type bytes; nothing extra."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from sotto.wire import api, b64


def _account(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "identity_key": b64.encode(b"\x05" + bytes(32)),
        "registration_id": 1,
        "device_secret": b64.encode(bytes(32)),
    }
    body.update(overrides)
    return body


def test_valid_body_and_json_round_trip() -> None:
    model = api.CreateAccount.model_validate(_account())
    assert model.identity_key == b"\x05" + bytes(32)
    assert api.CreateAccount.model_validate_json(model.model_dump_json()) == model


@pytest.mark.parametrize(
    "overrides",
    [
        {"identity_key": b64.encode(b"\x08" + bytes(32))},
        {"identity_key": b64.encode(b"\x05" + bytes(31))},
        {"identity_key": b64.encode(b"\x05" + bytes(32)) + "="},
        {"identity_key": 5},
        {"device_secret": b64.encode(bytes(33))},
        {"registration_id": 0x4000},
        {"extra": True},
    ],
)
def test_invalid_bodies(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        api.CreateAccount.model_validate(_account(**overrides))


def test_kem_keys_need_their_type_byte_and_length() -> None:
    good = {"id": 1, "public_key": b64.encode(b"\x08" + bytes(1568)), "signature": b64.encode(bytes(64))}
    assert api.KyberPreKey.model_validate(good).id == 1
    for key in (b"\x05" + bytes(1568), b"\x08" + bytes(1567), b""):
        with pytest.raises(ValidationError):
            api.KyberPreKey.model_validate({**good, "public_key": b64.encode(key)})


def test_payload_size_is_capped_and_bucket_checked() -> None:
    ok = api.SendMessage.model_validate(
        {"message_id": b64.encode(bytes(16)), "payload": b64.encode(bytes(512))}
    )
    assert ok.payload_is_bucket()
    odd = api.SendMessage.model_validate(
        {"message_id": b64.encode(bytes(16)), "payload": b64.encode(bytes(500))}
    )
    assert not odd.payload_is_bucket()
    with pytest.raises(ValidationError):
        api.SendMessage.model_validate(
            {"message_id": b64.encode(bytes(16)), "payload": b64.encode(bytes(65537))}
        )


def test_upload_lists_are_capped() -> None:
    key = {"id": 1, "public_key": b64.encode(b"\x05" + bytes(32))}
    api.UploadKeys.model_validate({"one_time_pre_keys": [key] * 100})
    with pytest.raises(ValidationError):
        api.UploadKeys.model_validate({"one_time_pre_keys": [key] * 101})


@given(st.integers(2, 70), st.data())
def test_b64_pattern_matches_exactly_the_canonical_texts(length: int, data: st.DataObject) -> None:
    first = data.draw(st.none() | st.integers(0, 255))
    pattern = re.compile(api.b64_pattern(length, first))
    raw = data.draw(st.binary(min_size=length, max_size=length))
    if first is not None:
        raw = bytes([first]) + raw[1:]
    assert pattern.match(b64.encode(raw))
    text = data.draw(st.from_regex(pattern, fullmatch=True))
    decoded = b64.decode(text, length=length)
    assert first is None or decoded[0] == first


def test_payload_schema_states_the_buckets() -> None:
    schema = api.SendMessage.model_json_schema()["properties"]["payload"]
    assert schema["minLength"] == len(b64.encode(bytes(256)))
    assert schema["maxLength"] == len(b64.encode(bytes(65536)))
    assert "65536" in schema["description"]


_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@given(st.text(alphabet=_B64URL + "=+/ ", max_size=40) | st.binary(max_size=30).map(b64.encode))
def test_the_payload_pattern_admits_exactly_what_the_decoder_accepts(text: str) -> None:
    """The OpenAPI pattern used to admit any base64url-alphabet text (``"A"``, ``"AB"``), which
    the decoder refuses; now they agree on every text (the bucket length is checked apart)."""
    pattern = re.compile(api.SendMessage.model_json_schema()["properties"]["payload"]["pattern"])
    try:
        b64.decode(text)
        decodes = True
    except Exception:
        decodes = False
    assert bool(pattern.fullmatch(text)) == decodes


def _token(expires_day: object) -> dict[str, object]:
    return {"token": b64.encode(bytes(32)), "expires_day": expires_day}


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (api.AddAccessToken, _token(False)),  # was stored as day 0: a dead token
        (api.AddAccessToken, _token(True)),
        (api.AddAccessToken, _token("20000")),
        (api.AddAccessToken, _token(20000.5)),
        (api.AddAccessToken, _token(None)),
        (api.PreKey, {"id": True, "public_key": b64.encode(b"\x05" + bytes(32))}),
        (api.PreKey, {"id": "2", "public_key": b64.encode(b"\x05" + bytes(32))}),
        (api.CreateAccount, _account(registration_id="1")),
        (api.CreateAccount, _account(registration_id=True)),
        (api.Poll, {"limit": True}),
        (api.Poll, {"limit": "8"}),
        (api.Poll, {"ack": "AAAA"}),
        (
            api.CreateMailbox,
            {
                "mailbox_id": b64.encode(bytes(16)),
                "auth_key": b64.encode(bytes(32)),
                "delivery_token": b64.encode(bytes(32)),
                "ttl_days": "30",
            },
        ),
        (api.SetUsername, {"username": 123}),
    ],
)
def test_no_field_is_coerced(model: type[api.Model], body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        model.model_validate(body)
    with pytest.raises(ValidationError):
        model.model_validate_json(json.dumps(body))


def test_a_json_number_without_fraction_is_an_integer() -> None:
    """JSON Schema calls ``2.0`` an integer, and so do the models (as 2)."""
    assert api.AddAccessToken.model_validate(_token(20000.0)).expires_day == 20000
    assert api.AddAccessToken.model_validate_json(json.dumps(_token(20000.0))).expires_day == 20000
    assert api.PreKey.model_validate({"id": 2.0, "public_key": b64.encode(b"\x05" + bytes(32))}).id == 2


_TRIPLES = st.lists(
    st.tuples(
        st.binary(min_size=16, max_size=16),
        st.integers(min_value=0, max_value=999_999),
        st.binary(max_size=2_000),
    ),
    max_size=5,
)


@given(_TRIPLES, st.booleans())
def test_the_relay_writes_poll_answers_as_the_model_does(
    triples: list[tuple[bytes, int, bytes]], more: bool
) -> None:
    model = api.PollResult(
        envelopes=[api.PolledEnvelope(id=i, day=d, payload=p) for i, d, p in triples], more=more
    )
    written = api.poll_result_json(triples, more=more)
    assert written == model.model_dump_json().encode()
    length, pieces = api.poll_result_parts(triples, more=more)
    assert length == len(written) and b"".join(pieces) == written
    assert api.PollResult.model_validate_json(written) == model


def test_encode_ascii_is_encode_as_bytes() -> None:
    for size in range(70):
        data = bytes(range(size))
        assert b64.encode_ascii(data) == b64.encode(data).encode()


def test_a_large_poll_answer_is_made_in_pieces_of_about_64_kib() -> None:
    triples = [(bytes(16), 20_000, bytes(60_000)) for _ in range(8)]
    length, pieces = api.poll_result_parts(triples, more=True)
    made = list(pieces)
    assert len(made) >= 6 and all(len(p) < 2 * api.POLL_PIECE_BYTES for p in made)
    assert sum(map(len, made)) == length
