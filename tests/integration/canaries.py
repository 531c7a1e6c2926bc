"""Canaries and the search for them: every way a value could be written down, and where it was.

A canary is a value a test makes unique (a text, a name, an account id, a source address) so
that finding it anywhere proves it was stored. :func:`scan` searches raw bytes for each of its
forms; :class:`PageMap` says which table or index owns the SQLite page a hit falls in, for the
one case where a value is *meant* to be stored (an account id in its own account's rows).

:class:`CanaryNetwork` is the SDK's HTTP network with every socket bound to one loopback source
address and every request (HTTP and the WebSocket upgrade) carrying forwarding headers that
name other addresses, so a relay that logged or stored where a request came from, or believed
the headers, would write a canary down.
"""

from __future__ import annotations

import base64
import ipaddress
import sqlite3
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import websockets

from sotto.client.transport import (
    CONNECT_TIMEOUT_S,
    DrainConnection,
    HttpNetwork,
    Relay,
    WebSocketDrain,
)
from sotto.errors import RelayUnavailableError
from sotto.wire.limits import MAX_FRAME_BYTES

Forms = dict[str, bytes]


def ip_forms(address: str) -> Forms:
    """An IP address as text, packed bytes, integers, IPv4-mapped IPv6 and hex."""
    ip = ipaddress.ip_address(address)
    packed = ip.packed
    forms = {
        "text": address.encode(),
        "packed": packed,
        "integer": str(int(ip)).encode(),
        "hex": packed.hex().encode(),
        "utf-16": address.encode("utf-16-le"),
    }
    if ip.version == 4:
        forms |= {
            "mapped": f"::ffff:{address}".encode(),
            "mapped-packed": ipaddress.ip_address(f"::ffff:{address}").packed,
            "integer-le": str(int.from_bytes(packed, "little")).encode(),
            "packed-reversed": packed[::-1],
        }
    else:
        forms["exploded"] = ip.exploded.encode()
    return forms


def id_forms(raw: bytes) -> Forms:
    """A 16-byte id raw, in hex, base64url and base64, and as the UUID string protocol names use."""
    return {
        "raw": raw,
        "hex": raw.hex().encode(),
        "HEX": raw.hex().upper().encode(),
        "base64url": base64.urlsafe_b64encode(raw).rstrip(b"="),
        "base64": base64.b64encode(raw),
        "uuid": str(uuid.UUID(bytes=raw)).encode(),
    }


def text_forms(text: str) -> Forms:
    """A text in UTF-8 (as typed and lowercased) and UTF-16."""
    return {
        "utf-8": text.encode(),
        "lower": text.lower().encode(),
        "utf-16": text.encode("utf-16-le"),
    }


@dataclass(frozen=True, slots=True)
class Hit:
    canary: str
    form: str
    where: str
    offset: int

    def __str__(self) -> str:
        return f"{self.canary} ({self.form}) in {self.where} at {self.offset}"


def scan(blobs: Mapping[str, bytes], canaries: Mapping[str, Forms]) -> list[Hit]:
    """Every occurrence of every form of every canary in every blob."""
    hits = []
    for where, data in blobs.items():
        for canary, forms in canaries.items():
            for form, needle in forms.items():
                start = data.find(needle)
                while start != -1:
                    hits.append(Hit(canary, form, where, start))
                    start = data.find(needle, start + 1)
    return hits


def files_under(directory: Path) -> dict[str, bytes]:
    """Every regular file below ``directory``, by relative path."""
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


class PageMap:
    """Which table or index owns each page of a SQLite file (``dbstat``); free pages own nothing."""

    def __init__(self, db: Path) -> None:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            self.page_size: int = conn.execute("PRAGMA page_size").fetchone()[0]
            self.owners: dict[int, str] = dict(
                (page, name) for name, page in conn.execute("SELECT name, pageno FROM dbstat")
            )
            tables = conn.execute("SELECT name, tbl_name FROM sqlite_master").fetchall()
        finally:
            conn.close()
        self.table_of: dict[str, str] = {name: table for name, table in tables}

    def table_at(self, offset: int) -> str | None:
        """The table whose data (or index) holds the byte at ``offset`` of the main file."""
        owner = self.owners.get(offset // self.page_size + 1)
        if owner is None:
            return None
        return self.table_of.get(owner, owner)


# ---------------------------------------------------------------------------- the canary network
class _HeaderTransport(httpx.AsyncBaseTransport):
    """Adds fixed headers to every request, then hands it to ``inner``."""

    def __init__(self, inner: httpx.AsyncBaseTransport, headers: Mapping[str, str]) -> None:
        self._inner = inner
        self._headers = dict(headers)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers.update(self._headers)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class CanaryNetwork:
    """The SDK's network from ``source`` (a loopback address), with ``headers`` on every request."""

    def __init__(self, source: str, headers: Mapping[str, str]) -> None:
        self.source = source
        self.headers = dict(headers)
        transport = _HeaderTransport(httpx.AsyncHTTPTransport(local_address=source), self.headers)
        self.inner = HttpNetwork(transport=transport)

    def relay(self, url: str) -> Relay:
        return cast(Relay, _CanaryRelay(self.inner.relay(url), self))

    async def aclose(self) -> None:
        await self.inner.aclose()


class _CanaryRelay:
    def __init__(self, inner: Relay, network: CanaryNetwork) -> None:
        self._inner = inner
        self._network = network

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def connect(self) -> DrainConnection:
        """The SDK's own drain connection, made from the canary source address."""
        ws_url = "ws" + self._inner.url.removeprefix("http") + "/v1/ws"
        try:
            socket = await websockets.connect(
                ws_url,
                max_size=MAX_FRAME_BYTES,
                open_timeout=CONNECT_TIMEOUT_S,
                local_addr=(self._network.source, 0),
                additional_headers=self._network.headers,
                user_agent_header=self._network.headers.get("User-Agent"),
            )
        except (OSError, TimeoutError, websockets.WebSocketException) as e:
            raise RelayUnavailableError(f"delivery connection failed: {type(e).__name__}") from None
        drain = WebSocketDrain(socket)
        try:
            await drain.start()
        except BaseException:
            await drain.close()
            raise
        return drain
