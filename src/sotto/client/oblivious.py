"""Reaching the relay through a forwarder, sealed with Oblivious HTTP (RFC 9458, ``docs/ohttp.md``).

:func:`oblivious_network` is an :class:`~sotto.client.transport.HttpNetwork` whose every HTTP
call goes through :class:`ObliviousTransport`: the request is written as binary HTTP (RFC 9292)
with only the fields the relay reads, plus a ``Date`` (the gateway's replay window, RFC 9458
§6.5), sealed to the relay gateway's key configuration, and POSTed to the forwarder as
``message/ohttp-req``. The forwarder sees our address and the size; the relay sees the request
and the forwarder's address. The sealed answer is opened into the ``httpx.Response`` the rest
of the client expects, so :class:`~sotto.client.transport.HttpRelay` runs unchanged.

What changes for the client:

- Only the relay given is reachable (a request to any other origin is
  :class:`UnroutableRelayError`, never sent directly: that would give our address away).
- The delivery WebSocket is not carried: opening one is :class:`ObliviousWebSocketError`, and
  sends go over HTTP. Default mode receives by long polls, one sealed request per mailbox
  (:mod:`sotto.client.longpoll`), which go to the forwarder's :data:`HOLD_PATH` with a timeout
  as long as the relay may hold them; cadence mode's polls are plain HTTP.
- A refusal by the forwarder or the gateway (rate limit, size, key) comes back as the relay's
  own refusals do (``{"code", "message"}`` with the status), so it raises
  :class:`~sotto.errors.RelayError`; a forwarder that cannot reach the relay (502, 503, 504) is
  :class:`ForwarderUnavailableError`, which the SDK sees as the relay being unavailable.
- A gateway that finds our clock outside its window answers with its own ``Date``; we send
  again once with the difference, and keep it.

Fetch the key configuration once (:func:`fetch_key_config`, from the relay's
``/v1/gateway/keys`` or the forwarder's copy) and keep it; ``pinned`` refuses any other, so a
forwarder cannot hand us a key of its own.
"""

from __future__ import annotations

import email.utils
import json
import time
import weakref
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

import httpx

from sotto.client.transport import HELD_EXTENSION, HTTP_TIMEOUT_S, HttpNetwork, Socket
from sotto.crypto.random import Rng, system_rng
from sotto.errors import RelayUnavailableError
from sotto.wire import bhttp, ohttp

__all__ = [
    "FORWARD_PATH",
    "HOLD_PATH",
    "ForwarderUnavailableError",
    "ObliviousTransport",
    "ObliviousWebSocketError",
    "UnroutableRelayError",
    "fetch_key_config",
    "oblivious_network",
    "oblivious_transport_of",
    "refuse_websocket",
]

FORWARD_PATH: Final = "/v1/ohttp"
"""Where a forwarder takes Encapsulated Requests (``sotto.forwarder``)."""
HOLD_PATH: Final = "/v1/ohttp/hold"
"""Where a forwarder takes the ones the relay may hold (long polls), with budgets of their own."""
_KEPT_FIELDS: Final = frozenset({"content-type", "authorization", "upload-offset", "range"})
"""Request fields the relay reads, besides its own ``sotto-*`` ones; the rest (user agent,
accept, encodings) would only tell one client's software from another's."""
DOWNLOAD_PIECE: Final = bhttp.DEFAULT_LIMITS.max_content - 64 * 1024
"""The most bytes of an attachment's blob fetched in one sealed call: the gateway seals an
answer of at most ``max_content`` bytes (and the fields beside them must fit too), so a blob
is fetched in ranges of this size."""
_DATE_PROBLEM: Final = "https://iana.org/assignments/http-problem-types#date"


class ObliviousWebSocketError(RelayUnavailableError):
    """The delivery WebSocket was asked for; it is not carried through the forwarder yet."""


class UnroutableRelayError(RelayUnavailableError):
    """A request to a relay this transport has no gateway key for; it was not sent."""


class ForwarderUnavailableError(httpx.TransportError):
    """The forwarder answered that the relay is unreachable or busy (502, 503, 504)."""


async def refuse_websocket(url: str) -> Socket:
    """The socket opener of an oblivious network: always :class:`ObliviousWebSocketError`."""
    raise ObliviousWebSocketError("no delivery WebSocket through the forwarder; use cadence mode")


class ObliviousTransport(httpx.AsyncBaseTransport):
    """httpx transport: each request to ``relay_url`` sealed to ``config`` and sent to the forwarder.

    ``local_address``: the address our connections to the forwarder leave from; ``transport``
    replaces the network to the forwarder (tests); ``clock``: seconds since the epoch for Date.
    """

    def __init__(
        self,
        forwarder_url: str,
        config: ohttp.KeyConfig,
        *,
        relay_url: str,
        local_address: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: Rng = system_rng,
        clock: Callable[[], float] = time.time,
        timeout: float = HTTP_TIMEOUT_S,
    ) -> None:
        self.forwarder_url = forwarder_url.rstrip("/")
        self.local_address = local_address
        self.forwarder_transport = transport
        """The network to the forwarder this transport was given (None: the real one)."""
        self.relay_url = relay_url.rstrip("/")
        self._target = forwarder_url.rstrip("/") + FORWARD_PATH
        self._hold_target = forwarder_url.rstrip("/") + HOLD_PATH
        self._config = config
        self._origin = _origin(relay_url)
        self._rng = rng
        self._clock = clock
        self._offset = 0.0
        """Added to our clock for Date: learned from the gateway's date refusals."""
        self._http = httpx.AsyncClient(
            timeout=timeout,
            transport=transport or httpx.AsyncHTTPTransport(local_address=local_address),
            follow_redirects=False,
            headers={"user-agent": "sotto", "accept-encoding": "identity"},
        )
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if _origin(str(url)) != self._origin:
            raise UnroutableRelayError("no gateway key for that relay; not sent")
        content = await request.aread()
        fields = tuple(
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in request.headers.items()
            if name.lower() in _KEPT_FIELDS or name.lower().startswith("sotto-")
        )
        inner = bhttp.Request(
            request.method.encode("ascii"),
            url.scheme.encode("ascii"),
            url.netloc,
            url.raw_path,
            fields,
            content,
        )
        held = request.extensions.get(HELD_EXTENSION)
        held_s = float(held) if isinstance(held, (int, float)) else None
        for attempt in range(2):
            response, date = await self._exchange(inner, held_s)
            if date is None or attempt:
                return response
            self._offset = date - self._clock()
        raise AssertionError("unreachable")

    async def _exchange(
        self, inner: bhttp.Request, held_s: float | None = None
    ) -> tuple[httpx.Response, float | None]:
        """One sealed round trip; the gateway's Date when it refused ours. ``held_s``: the relay
        may hold it that long (a long poll): sent to the forwarder's hold path, waited for longer."""
        dated = bhttp.Request(
            inner.method,
            inner.scheme,
            inner.authority,
            inner.path,
            (*inner.headers, (b"date", _http_date(self._clock() + self._offset))),
            inner.content,
        )
        try:
            encoded = bhttp.encode_request(dated)
            enc_request, context = ohttp.encapsulate_request(self._config, encoded, self._rng)
        except ohttp.ObliviousHttpError:
            return _refusal(413, "too_large", "the request does not fit in an encapsulated request"), None
        if held_s is None:
            outer = await self._http.post(
                self._target, content=enc_request, headers={"content-type": ohttp.REQUEST_MEDIA_TYPE}
            )
        else:
            outer = await self._http.post(
                self._hold_target,
                content=enc_request,
                headers={"content-type": ohttp.REQUEST_MEDIA_TYPE},
                timeout=HTTP_TIMEOUT_S + held_s,
            )
        body = outer.content
        if outer.status_code in (502, 503, 504):
            raise ForwarderUnavailableError(f"the forwarder answered {outer.status_code}")
        if outer.status_code != 200 or outer.headers.get("content-type") != ohttp.RESPONSE_MEDIA_TYPE:
            return _translated(outer.status_code, body), None
        try:
            answer = bhttp.decode_response(ohttp.decapsulate_response(context, body))
        except (ohttp.ObliviousHttpError, bhttp.BinaryHttpError):
            raise ForwarderUnavailableError("an answer that does not open") from None
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in answer.headers]
        if (b"content-type", b"application/problem+json") in answer.headers:
            # the gateway's own sealed refusal: in the relay's error shape, like the plain ones
            return _translated(answer.status, answer.content), _refused_date(answer)
        return httpx.Response(answer.status, headers=headers, content=answer.content), None

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._http.aclose()

    # For requests sealed now and sent later by someone else (``sotto.client.schedule``).
    @property
    def date_offset(self) -> float:
        """Seconds added to our clock for Date, learnt from the gateway's refusals."""
        return self._offset

    def seal(
        self, method: str, path: str, headers: tuple[tuple[bytes, bytes], ...], content: bytes, date: float
    ) -> tuple[bytes, ohttp.ResponseContext]:
        """The Encapsulated Request of one call to our relay, dated ``date`` (gateway clock, unix
        seconds), and the context that opens its answer. ObliviousHttpError if it does not fit."""
        scheme, authority = self._origin
        inner = bhttp.Request(
            method.encode("ascii"),
            scheme.encode("ascii"),
            authority.encode("ascii"),
            path.encode("ascii"),
            (*headers, (b"date", _http_date(date))),
            content,
        )
        try:
            encoded = bhttp.encode_request(inner)
        except bhttp.BinaryHttpError as e:
            raise ohttp.ObliviousHttpError(str(e)) from None
        return ohttp.encapsulate_request(self._config, encoded, self._rng)

    def open_sealed(
        self, context: ohttp.ResponseContext, status: int, media_type: str, body: bytes
    ) -> httpx.Response:
        """The relay's answer to a sealed request sent later, as :meth:`handle_async_request`
        would have returned it; a gateway date refusal moves our Date offset for next time."""
        if status in (502, 503, 504):
            raise ForwarderUnavailableError(f"the forwarder got {status}")
        if status != 200 or media_type != ohttp.RESPONSE_MEDIA_TYPE:
            return _translated(status, body)
        try:
            answer = bhttp.decode_response(ohttp.decapsulate_response(context, body))
        except (ohttp.ObliviousHttpError, bhttp.BinaryHttpError):
            raise ForwarderUnavailableError("an answer that does not open") from None
        if (b"content-type", b"application/problem+json") in answer.headers:
            date = _refused_date(answer)
            if date is not None:
                self._offset = date - self._clock()
            return _translated(answer.status, answer.content)
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in answer.headers]
        return httpx.Response(answer.status, headers=headers, content=answer.content)


_TRANSPORTS: weakref.WeakKeyDictionary[HttpNetwork, ObliviousTransport] = weakref.WeakKeyDictionary()


def oblivious_transport_of(network: object) -> ObliviousTransport | None:
    """The transport of a network :func:`oblivious_network` made (None for any other)."""
    return _TRANSPORTS.get(network) if isinstance(network, HttpNetwork) else None


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _http_date(unix_seconds: float) -> bytes:
    return email.utils.formatdate(unix_seconds, usegmt=True).encode("ascii")


def _refused_date(answer: bhttp.Response) -> float | None:
    """The gateway's Date, if ``answer`` is its date refusal (RFC 9458 §6.5.2)."""
    if answer.status != 400:
        return None
    try:
        problem = json.loads(answer.content)
        if problem.get("type") != _DATE_PROBLEM:
            return None
        (date,) = [v for n, v in answer.headers if n == b"date"]
        return email.utils.parsedate_to_datetime(date.decode("ascii")).timestamp()
    except (ValueError, TypeError, AttributeError, UnicodeDecodeError):
        return None


def _refusal(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": message})


def _translated(status: int, body: bytes) -> httpx.Response:
    """A plain refusal by the forwarder or the gateway, in the relay's own error shape."""
    code, message = "forwarder_refused", f"HTTP {status}"
    try:
        problem = json.loads(body)
        code = str(problem.get("code", code))[:64]
        message = str(problem.get("title", problem.get("message", message)))[:256]
    except (ValueError, TypeError, AttributeError):
        pass
    return _refusal(status, code, message)


async def fetch_key_config(
    url: str,
    *,
    pinned: ohttp.KeyConfig | None = None,
    local_address: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ohttp.KeyConfig:
    """The first key configuration served at ``url`` (``application/ohttp-keys``).

    With ``pinned``, anything else is refused: a forwarder that relays the keys could otherwise
    hand out a key of its own and read every request. A failure is RelayUnavailableError."""
    async with httpx.AsyncClient(
        timeout=HTTP_TIMEOUT_S,
        transport=transport or httpx.AsyncHTTPTransport(local_address=local_address),
        headers={"user-agent": "sotto"},
    ) as http:
        try:
            response = await http.get(url)
        except httpx.HTTPError as e:
            raise RelayUnavailableError(f"key configuration not fetched: {type(e).__name__}") from None
    if response.status_code != 200 or response.headers.get("content-type") != ohttp.KEYS_MEDIA_TYPE:
        raise RelayUnavailableError(f"no key configuration at that address (HTTP {response.status_code})")
    try:
        config = ohttp.decode_key_configs(response.content)[0]
    except ohttp.ObliviousHttpError:
        raise RelayUnavailableError("a key configuration that does not parse") from None
    if pinned is not None and config != pinned:
        raise RelayUnavailableError("the key configuration is not the pinned one")
    return config


def oblivious_network(
    forwarder_url: str,
    config: ohttp.KeyConfig,
    *,
    relay_url: str,
    local_address: str | None = None,
    clock_ms: Callable[[], int] | None = None,
    rng: Rng = system_rng,
    transport: httpx.AsyncBaseTransport | None = None,
    timeout: float = HTTP_TIMEOUT_S,
) -> HttpNetwork:
    """The client's network with every call to ``relay_url`` sealed through the forwarder."""
    oblivious = ObliviousTransport(
        forwarder_url,
        config,
        relay_url=relay_url,
        local_address=local_address,
        transport=transport,
        rng=rng,
        clock=time.time if clock_ms is None else (lambda: clock_ms() / 1000),
        timeout=timeout,
    )
    network = HttpNetwork(
        timeout=timeout,
        transport=oblivious,
        fresh_transport=oblivious,
        websocket_sends=False,
        open_socket=refuse_websocket,
        clock_ms=clock_ms,
        long_poll=True,
        download_piece=DOWNLOAD_PIECE,
    )
    _TRANSPORTS[network] = oblivious
    return network
