"""A profile that reaches its relay through a forwarder (Oblivious HTTP, ``docs/ohttp.md``).

``sotto init --forwarder URL`` writes ``forwarder.json`` into the profile before anything is
sent: the forwarder's URL, the relay's, and the relay's key configuration as the forwarder
served it then (trust on first use: every later command refuses another key, so a forwarder
cannot swap in a key of its own). From then on every command of the profile seals each request
to the relay and sends it through the forwarder, so the relay never sees the device's address.
Delete the file to go direct again.

The forwarder carries HTTP requests only, not the delivery WebSocket: a plain ``sotto listen``
receives by long polls (:mod:`sotto.client.longpoll`), ``sotto listen --cadence`` by its polls.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sotto.client.oblivious import FORWARD_PATH, fetch_key_config, oblivious_network
from sotto.client.transport import HttpNetwork
from sotto.errors import DecodeError
from sotto.wire import b64, ohttp

__all__ = ["FORWARDER_FILE", "KEYS_PATH", "Forwarding", "first_contact", "read", "remove", "write"]

FORWARDER_FILE: Final = "forwarder.json"
"""The profile's forwarder setting (absent: the profile talks to its relay directly)."""
KEYS_PATH: Final = f"{FORWARD_PATH}/keys"
"""Where a forwarder serves the relay's key configuration."""


@dataclass(frozen=True, slots=True)
class Forwarding:
    """Reach ``relay`` through ``forwarder``, sealed to ``key_config``."""

    forwarder: str
    relay: str
    key_config: ohttp.KeyConfig

    def network(self) -> HttpNetwork:
        """A fresh oblivious network (the caller closes it)."""
        return oblivious_network(self.forwarder, self.key_config, relay_url=self.relay)


async def first_contact(forwarder: str, relay: str) -> Forwarding:
    """Fetch the relay's key configuration through ``forwarder`` (RelayUnavailableError if it
    cannot be had)."""
    forwarder = forwarder.rstrip("/")
    config = await fetch_key_config(forwarder + KEYS_PATH)
    return Forwarding(forwarder, relay.rstrip("/"), config)


def read(profile: Path) -> Forwarding | None:
    """The profile's setting, or None when it has none. A file that does not parse is
    ValueError: a profile meant to hide its address must not fall back to going direct."""
    path = profile / FORWARDER_FILE
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} cannot be read: {e}") from None
    try:
        (config,) = ohttp.decode_key_configs(b64.decode(data["key_config"]))[:1]
        return Forwarding(str(data["forwarder"]), str(data["relay"]), config)
    except (KeyError, TypeError, ValueError, DecodeError) as e:
        raise ValueError(f"{path} is not a forwarder setting: {e}") from None


def write(profile: Path, setting: Forwarding) -> None:
    """Write the setting durably (readable by its owner only), replacing any earlier one."""
    data = {
        "forwarder": setting.forwarder,
        "relay": setting.relay,
        "key_config": b64.encode(ohttp.encode_key_configs([setting.key_config])),
    }
    path = profile / FORWARDER_FILE
    partial = path.with_suffix(".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def remove(profile: Path) -> None:
    """Forget the setting (the profile then talks to its relay directly)."""
    (profile / FORWARDER_FILE).unlink(missing_ok=True)
