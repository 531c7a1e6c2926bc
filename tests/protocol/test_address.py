"""ServiceId parsing and the 36-byte addresses binding, as libsignal builds them."""

from __future__ import annotations

import uuid

from sotto.protocol.address import ProtocolAddress, encode_addresses, service_id_fixed_width

ACI = "9d0652a3-dcc3-4d11-975f-74d61598733f"
PNI = "PNI:796abedb-ca4e-4f18-8803-1fde5b921f9f"


def test_aci_and_pni_fixed_width() -> None:
    assert service_id_fixed_width(ACI) == b"\x00" + uuid.UUID(ACI).bytes
    assert service_id_fixed_width(PNI) == b"\x01" + uuid.UUID(PNI[4:]).bytes
    assert service_id_fixed_width(ACI.upper()) == service_id_fixed_width(ACI)


def test_non_service_ids() -> None:
    for name in (
        "alice",
        "",
        ACI.replace("-", ""),
        "{" + ACI + "}",
        "ACI:" + ACI,
        "pni:" + PNI[4:],
        ACI + " ",
    ):
        assert service_id_fixed_width(name) is None


def test_addresses_blob() -> None:
    blob = encode_addresses(ProtocolAddress(ACI, 3), ProtocolAddress(PNI, 7))
    assert blob is not None and len(blob) == 36
    assert blob[0] == 0 and blob[17] == 3 and blob[18] == 1 and blob[35] == 7
    assert encode_addresses(ProtocolAddress("alice", 1), ProtocolAddress(ACI, 1)) is None
    assert str(ProtocolAddress(ACI, 2)) == f"{ACI}.2"
