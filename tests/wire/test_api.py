"""HTTP bodies: byte fields are strict base64url of exact lengths and type bytes; nothing extra."""

from __future__ import annotations

import pytest
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
