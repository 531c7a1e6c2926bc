"""Each package declares its public face in ``__init__.py`` with ``__all__``, and it holds.

Every name listed resolves (as ``from package import name`` would resolve it), nothing is listed
twice, importing a package's face keeps the layering at run time (the server loads no protocol or
client code; the protocol loads nothing outside protocol and crypto), and a light module does not
drag its package's heavy parts in with it.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from types import ModuleType

import pytest

import sotto.protocol

PACKAGES = [
    "sotto.audit",
    "sotto.audit.leakage",
    "sotto.client",
    "sotto.crypto",
    "sotto.protocol",
    "sotto.protocol.group",
    "sotto.protocol.ratchet",
    "sotto.protocol.sealed_sender",
    "sotto.protocol.store",
    "sotto.server",
    "sotto.server.bus",
    "sotto.server.storage",
    "sotto.store",
    "sotto.store.sqlite",
    "sotto.wire",
]


def resolve(package: ModuleType, name: str) -> object:
    """What ``from package import name`` binds: an attribute, else the submodule of that name."""
    try:
        return getattr(package, name)
    except AttributeError:
        return importlib.import_module(f"{package.__name__}.{name}")


@pytest.mark.parametrize("name", PACKAGES)
def test_every_package_declares_all_and_every_name_resolves(name: str) -> None:
    package = importlib.import_module(name)
    declared = package.__dict__.get("__all__")
    assert isinstance(declared, list), f"{name} has no __all__ list"
    assert all(isinstance(item, str) for item in declared)
    assert len(set(declared)) == len(declared), f"{name}.__all__ lists a name twice"
    for item in declared:
        assert resolve(package, item) is not None, f"{name}.{item}"
    missing = "no_such_name_here"
    with pytest.raises(AttributeError):
        getattr(package, missing)


def test_protocol_face_names_the_calls_a_libsignal_user_expects() -> None:
    for item in (
        "InMemoryProtocolStore",
        "PreKeyDecryptResult",
        "message_encrypt",
        "message_decrypt",
        "process_prekey_bundle",
        "sealed_sender_decrypt",
        "session",
        "group",
    ):
        assert item in sotto.protocol.__all__


def _loaded_after(statement: str) -> list[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded: list[str] = json.loads(done.stdout.splitlines()[-1])
    return loaded


def test_importing_the_server_loads_no_protocol_or_client_code() -> None:
    loaded = _loaded_after("import sotto.server")
    assert "sotto.server" in loaded
    assert [m for m in loaded if m.startswith(("sotto.protocol", "sotto.client", "sotto.store"))] == []


def test_importing_the_protocol_loads_only_protocol_crypto_and_errors() -> None:
    loaded = _loaded_after("import sotto.protocol")
    ours = [m for m in loaded if m == "sotto" or m.startswith("sotto.")]
    assert "sotto.protocol.store" in ours
    outside = [
        m
        for m in ours
        if m != "sotto" and not m.startswith(("sotto.protocol", "sotto.crypto", "sotto.errors"))
    ]
    assert outside == []


@pytest.mark.parametrize(
    ("statement", "not_loaded"),
    [
        ("import sotto.wire.padding", "sotto.wire.api"),
        ("import sotto.client.events", "sotto.client.sdk"),
        ("import sotto.store.model", "sotto.store.sqlite"),
        ("import sotto.crypto.keys", "sotto.crypto.passphrase"),
    ],
)
def test_a_light_module_does_not_load_its_package_heavy_parts(statement: str, not_loaded: str) -> None:
    assert not_loaded not in _loaded_after(statement)
