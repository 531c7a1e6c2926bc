"""Talking to relays: HTTP calls with httpx, the delivery WebSocket with ``websockets``.

:class:`Network` hands out one :class:`Relay` per server URL (our own for the account and our
mailboxes, contacts' for sending to theirs). :class:`HttpNetwork` is the real one; tests pass an
in-memory network with the same methods, so the SDK's flows run unchanged on both.

Errors: a reply with an error status is :class:`~sotto.errors.RelayError` (status and the
relay's stable code), typed for the refusals a caller acts on: the quotas' 507s
(:class:`~sotto.errors.MailboxFullError` and :class:`~sotto.errors.RelayFullError`, which the
outbox retries later; :class:`~sotto.errors.QuotaExceededError`) and the proof of work a busy
relay asks for (:class:`~sotto.errors.WorkRequiredError`). A relay that cannot be reached, a
timeout or a dropped connection is :class:`~sotto.errors.RelayUnavailableError`. None of them
says anything about what we sent.

Proof of work (relay-protocol §8): a relay busy with account or mailbox creations answers 428
with a challenge; :meth:`HttpRelay.create_account` and :meth:`HttpRelay.create_mailbox` solve it
(:mod:`sotto.client.work`, off the loop's thread when it takes more than a millisecond) and send
the call again with the answer, so a caller sees only the longer wait, or
:class:`~sotto.errors.WorkTooHardError` past the client's cap.

The drain connection: one WebSocket subscribes every mailbox we read (the relay may link them
while it lasts; that is measured, not hidden). A reader task sorts incoming frames:
envelopes into a queue for :meth:`DrainConnection.receive`, ``subscribed`` answers to the
waiting :meth:`DrainConnection.subscribe` calls in order. Acks go out only when the caller says
so, which the SDK does after the transaction that consumed the envelope committed.

Account calls (prekeys, access tokens) and bundle fetches go each on a connection opened for
that one request, in either mode, so the relay cannot tie them by connection to our mailbox
calls or to each other.

Cadence mode (relay-protocol §6) uses no WebSocket: :meth:`Relay.poll` drains one mailbox and
:meth:`Relay.send_alone` sends one envelope, each over HTTP on a connection opened for that one
request, so the relay sees no two of them on one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol, TypeVar

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from sotto.client import work as work_solver
from sotto.crypto.ed25519 import SigningKey
from sotto.errors import (
    DecodeError,
    MailboxFullError,
    QuotaExceededError,
    RelayError,
    RelayFullError,
    RelayUnavailableError,
    WorkRequiredError,
)
from sotto.wire import api, auth, b64, frames, work
from sotto.wire.limits import MAX_FRAME_BYTES

M = TypeVar("M", bound=api.Model)

HTTP_TIMEOUT_S = 15.0
SUBSCRIBE_BATCH = 200
"""Mailbox proofs per subscribe frame: about 26 KB of JSON, a fifth of the frame limit."""
CONNECT_TIMEOUT_S = 10.0
HELD_EXTENSION = "sotto.held_s"
"""Marks an httpx request the relay may hold (a long poll) with how long, in seconds, so a
transport can carry it accordingly (the oblivious one sends it on the forwarder's hold path)."""
ATTACHMENT_ID_LENGTH = 16
UPLOAD_TOKEN_LENGTH = 32
WORK_ATTEMPTS = 3
"""Sends of one call that a relay may answer with a challenge: the first, then two answers (a
challenge can expire or the relay restart while we solve)."""


class Socket(Protocol):
    """The WebSocket calls the drain and send connections make (``websockets``' client connection,
    or an in-process one in a simulation)."""

    @property
    def close_code(self) -> int | None: ...

    async def recv(self) -> str | bytes: ...

    async def send(self, message: str) -> None: ...

    async def close(self) -> None: ...

    def __aiter__(self) -> AsyncIterator[str | bytes]: ...


SocketOpener = Callable[[str], Awaitable[Socket]]
"""Opens the delivery WebSocket of the relay at a URL (``http(s)://host``)."""


class DrainConnection(Protocol):
    """One delivery connection: subscribe mailboxes, receive envelopes, acknowledge them."""

    async def subscribe(self, mailboxes: Mapping[bytes, SigningKey]) -> frames.Subscribed: ...

    async def receive(self, timeout: float | None = None) -> frames.Envelope | None:
        """The next envelope; None if ``timeout`` passed first. RelayUnavailableError when closed."""
        ...

    async def ack(self, refs: Sequence[tuple[bytes, bytes]]) -> None: ...

    async def close(self) -> None: ...


class Relay(Protocol):
    """One relay as the client uses it (``docs/relay-protocol.md``)."""

    url: str

    async def create_account(self, body: api.CreateAccount) -> api.AccountCreated: ...

    async def upload_keys(self, device: DeviceCredentials, body: api.UploadKeys) -> None: ...

    async def key_counts(self, device: DeviceCredentials) -> api.KeyCounts: ...

    async def add_access_token(self, device: DeviceCredentials, token: bytes, expires_day: int) -> None: ...

    async def delete_access_token(self, device: DeviceCredentials, token: bytes) -> None: ...

    async def fetch_bundle(self, account_id: bytes, access_token: bytes) -> api.Bundle: ...

    async def create_mailbox(self, body: api.CreateMailbox) -> None: ...

    async def delete_mailbox(self, mailbox_id: bytes, key: SigningKey) -> None: ...

    async def export_account(self, device: DeviceCredentials) -> dict[str, Any]: ...

    async def delete_account(self, device: DeviceCredentials) -> None: ...

    async def export_mailbox(self, mailbox_id: bytes, key: SigningKey) -> dict[str, Any]: ...

    async def send(self, mailbox_id: bytes, token: bytes, message_id: bytes, payload: bytes) -> bool:
        """Store one envelope; True if the relay had it already (a retry)."""
        ...

    async def connect(self) -> DrainConnection: ...

    # cadence mode (relay-protocol §6): each call on a connection of its own
    async def cadence(self) -> api.Cadence:
        """The relay's tick."""
        ...

    async def poll(
        self, mailbox_id: bytes, key: SigningKey, ack_ids: Sequence[bytes], limit: int
    ) -> api.PollResult:
        """Delete ``ack_ids`` from the mailbox, then take up to ``limit`` pending envelopes."""
        ...

    async def send_alone(self, mailbox_id: bytes, token: bytes, message_id: bytes, payload: bytes) -> bool:
        """:meth:`send` over HTTP on a fresh connection, tied to no other request."""
        ...


class Network(Protocol):
    """Every relay the client talks to, by URL."""

    def relay(self, url: str) -> Relay: ...

    async def aclose(self) -> None: ...


class DeviceCredentials:
    """What a device proves itself with; the repr hides the secret."""

    __slots__ = ("account_id", "device_id", "secret")

    def __init__(self, account_id: bytes, device_id: int, secret: bytes) -> None:
        self.account_id = account_id
        self.device_id = device_id
        self.secret = secret

    def header(self) -> str:
        return auth.encode_device_auth(self.account_id, self.device_id, self.secret)

    def __repr__(self) -> str:
        return f"DeviceCredentials(device_id={self.device_id}, <secret>)"


def mailbox_auth(
    key: SigningKey,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    unix_ms: int | None = None,
    nonce: bytes | None = None,
) -> str:
    """The ``Sotto-Mailbox-Auth`` header for one request: its time, a fresh nonce, and the
    signature over both, the body's hash, the method and the path. Never reuse one."""
    ms = _now_ms() if unix_ms is None else unix_ms
    nonce = secrets.token_bytes(auth.HTTP_NONCE_LENGTH) if nonce is None else nonce
    return auth.encode_mailbox_auth(ms, key.sign(auth.http_message(method, path, ms, nonce, body)), nonce)


def _now_ms() -> int:
    return int(time.time() * 1000)


def access_token_hash(token: bytes) -> str:
    """How the relay names a stored access token: SHA-256 of it, base64url."""
    return b64.encode(hashlib.sha256(token).digest())


QUOTA_ERRORS: dict[str, type[MailboxFullError | RelayFullError | QuotaExceededError]] = {
    "mailbox_full": MailboxFullError,
    "relay_full": RelayFullError,
    "quota_exceeded": QuotaExceededError,
}
"""The 507 codes (relay-protocol §7), each its own error."""


def relay_error(status: int, code: str, message: str) -> RelayError:
    """The error for a refusal: typed for the quotas' 507s, a plain RelayError otherwise."""
    typed = QUOTA_ERRORS.get(code) if status == 507 else None
    return typed(message) if typed is not None else RelayError(status, code, message)


def _relay_error(response: httpx.Response) -> RelayError:
    code, message = "http_error", f"HTTP {response.status_code}"
    with contextlib.suppress(ValueError, TypeError, KeyError):
        body = response.json()
        code, message = str(body["code"])[:64], str(body["message"])[:256]
    if response.status_code == 428:
        difficulty = 0
        with contextlib.suppress(ValueError, TypeError, KeyError):
            difficulty = int(response.json()["difficulty"])
        return WorkRequiredError(code, message, difficulty)
    return relay_error(response.status_code, code, message)


def _challenge(response: httpx.Response) -> bytes:
    """The challenge of a 428 answer; the answer's error if it holds none we can read."""
    try:
        return api.WorkRequired.model_validate(response.json()).challenge
    except ValueError:
        raise _relay_error(response) from None


class HttpRelay:
    """A relay over HTTP(S) and its WebSocket."""

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        *,
        websocket_sends: bool = True,
        fresh: httpx.AsyncClient | None = None,
        clock_ms: Callable[[], int] | None = None,
        open_socket: SocketOpener | None = None,
        max_work_bits: int = work_solver.DEFAULT_MAX_WORK_BITS,
        long_poll: bool = False,
        download_piece: int | None = None,
    ) -> None:
        """``clock_ms``: the time signed calls carry (the client's clock); ``open_socket``: how
        WebSockets are opened (``websockets`` over the network unless told otherwise);
        ``max_work_bits``: the hardest challenge we solve (relay-protocol §8); ``long_poll``:
        :meth:`connect` gives a drain of long polls instead of a WebSocket
        (:mod:`sotto.client.longpoll`); ``download_piece``: the most bytes of a blob one answer
        may carry (a blob is then fetched in ranges of that size; None: in one answer)."""
        self._long_poll = long_poll
        self._download_piece = download_piece
        self.url = url.rstrip("/")
        self._max_work_bits = max_work_bits
        self._http = client
        self._fresh = fresh or client
        self._clock_ms = clock_ms
        self._open_socket: SocketOpener = open_socket or _open_socket
        self._sender = WebSocketSender(self.url, self._open_socket) if websocket_sends else None
        self._sign_offset_ms = 0
        """Added to our clock for signed calls: learned from the relay's 401s (relay-protocol §2)."""

    async def _request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: api.Model | None = None,
        alone: bool = False,
    ) -> httpx.Response:
        """One call; with ``alone``, on a connection opened for it and closed after it."""
        content = None if body is None else body.model_dump_json().encode()
        response = await self._send(method, path, headers or {}, content, alone)
        if response.status_code >= 400:
            raise _relay_error(response)
        return response

    async def _with_work(self, method: str, path: str, body: api.Model) -> httpx.Response:
        """An anonymous creation, which a busy relay answers 428 with a challenge: solve it and
        send the call again with the answer, at most :data:`WORK_ATTEMPTS` sends in all."""
        content = body.model_dump_json().encode()
        headers: dict[str, str] = {}
        for _ in range(WORK_ATTEMPTS):
            response = await self._send(method, path, headers, content, False)
            if response.status_code != 428:
                break
            challenge = _challenge(response)
            nonce = await work_solver.solve(challenge, cap=self._max_work_bits)
            headers = {work.WORK_HEADER: work.encode_header(challenge, nonce)}
        if response.status_code >= 400:
            raise _relay_error(response)
        return response

    async def _signed(
        self,
        method: str,
        path: str,
        key: SigningKey,
        *,
        body: api.Model | None = None,
        alone: bool = False,
        held_s: float | None = None,
    ) -> httpx.Response:
        """A call signed by a mailbox key over its exact body, with a fresh nonce.

        A relay that finds the signature's time out of its window (our clock is off, or it has
        just started) answers 401 naming a time to sign with; we sign again with it, once, and
        keep the difference to our clock for later calls.
        """
        content = None if body is None else body.model_dump_json().encode()
        for attempt in range(2):
            sign_at = self._now_ms() + self._sign_offset_ms
            header = mailbox_auth(key, method, path, content or b"", unix_ms=sign_at)
            response = await self._send(
                method, path, {"sotto-mailbox-auth": header}, content, alone, held_s=held_s
            )
            named = auth.decode_sign_time(response.headers.get(auth.SIGN_TIME_HEADER))
            if response.status_code != 401 or named is None:
                break
            # Keep the correction, so a skewed clock costs one retry, not one per call.
            self._sign_offset_ms = named - self._now_ms()
            if attempt:
                break
        if response.status_code >= 400:
            raise _relay_error(response)
        return response

    def _now_ms(self) -> int:
        return _now_ms() if self._clock_ms is None else self._clock_ms()

    async def _send(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        content: bytes | None,
        alone: bool,
        *,
        held_s: float | None = None,
    ) -> httpx.Response:
        """``held_s``: the relay may hold the answer this long (a long poll): the timeout grows
        by it, and the request is marked with :data:`HELD_EXTENSION` for the transport."""
        all_headers = {"content-type": "application/json"} if content is not None else {}
        all_headers.update(headers)
        client = self._fresh if alone else self._http
        try:
            if held_s is not None:
                return await client.request(
                    method,
                    self.url + path,
                    content=content,
                    headers=all_headers,
                    timeout=HTTP_TIMEOUT_S + held_s,
                    extensions={HELD_EXTENSION: held_s},
                )
            return await client.request(method, self.url + path, content=content, headers=all_headers)
        except httpx.HTTPError as e:
            raise RelayUnavailableError(f"{method} request failed: {type(e).__name__}") from None

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise RelayError(response.status_code, "bad_reply", "the relay's reply is not JSON") from None

    async def create_account(self, body: api.CreateAccount) -> api.AccountCreated:
        response = await self._with_work("POST", "/v1/accounts", body)
        return _model(api.AccountCreated, self._json(response))

    async def upload_keys(self, device: DeviceCredentials, body: api.UploadKeys) -> None:
        await self._request(
            "PUT", "/v1/accounts/me/keys", headers={"authorization": device.header()}, body=body, alone=True
        )

    async def key_counts(self, device: DeviceCredentials) -> api.KeyCounts:
        response = await self._request(
            "GET", "/v1/accounts/me/keys", headers={"authorization": device.header()}, alone=True
        )
        return _model(api.KeyCounts, self._json(response))

    async def add_access_token(self, device: DeviceCredentials, token: bytes, expires_day: int) -> None:
        body = api.AddAccessToken(token=token, expires_day=expires_day)
        await self._request(
            "PUT",
            "/v1/accounts/me/access-tokens",
            headers={"authorization": device.header()},
            body=body,
            alone=True,
        )

    async def delete_access_token(self, device: DeviceCredentials, token: bytes) -> None:
        path = f"/v1/accounts/me/access-tokens/{access_token_hash(token)}"
        await self._request("DELETE", path, headers={"authorization": device.header()}, alone=True)

    async def fetch_bundle(self, account_id: bytes, access_token: bytes) -> api.Bundle:
        path = f"/v1/accounts/{b64.encode(account_id)}/bundle"
        response = await self._request(
            "GET", path, headers={"sotto-access-token": b64.encode(access_token)}, alone=True
        )
        return _model(api.Bundle, self._json(response))

    async def create_mailbox(self, body: api.CreateMailbox) -> None:
        await self._with_work("POST", "/v1/mailboxes", body)

    async def delete_mailbox(self, mailbox_id: bytes, key: SigningKey) -> None:
        path = f"/v1/mailboxes/{b64.encode(mailbox_id)}"
        await self._signed("DELETE", path, key)

    async def export_account(self, device: DeviceCredentials) -> dict[str, Any]:
        response = await self._request("GET", "/v1/export", headers={"authorization": device.header()})
        return _object(self._json(response))

    async def delete_account(self, device: DeviceCredentials) -> None:
        await self._request(
            "DELETE", "/v1/accounts/me", headers={"authorization": device.header()}, alone=True
        )

    async def export_mailbox(self, mailbox_id: bytes, key: SigningKey) -> dict[str, Any]:
        path = f"/v1/mailboxes/{b64.encode(mailbox_id)}/export"
        response = await self._signed("GET", path, key)
        return _object(self._json(response))

    async def send(self, mailbox_id: bytes, token: bytes, message_id: bytes, payload: bytes) -> bool:
        """Over the send WebSocket (or HTTP, when built with ``websocket_sends=False``)."""
        if self._sender is not None:
            return await self._sender.send(mailbox_id, token, message_id, payload)
        return await self._send_http(mailbox_id, token, message_id, payload, alone=False)

    async def send_alone(self, mailbox_id: bytes, token: bytes, message_id: bytes, payload: bytes) -> bool:
        return await self._send_http(mailbox_id, token, message_id, payload, alone=True)

    async def _send_http(
        self, mailbox_id: bytes, token: bytes, message_id: bytes, payload: bytes, *, alone: bool
    ) -> bool:
        path = f"/v1/mailboxes/{b64.encode(mailbox_id)}/messages"
        body = api.SendMessage(message_id=message_id, payload=payload)
        response = await self._request(
            "POST", path, headers={"sotto-delivery-token": b64.encode(token)}, body=body, alone=alone
        )
        return _model(api.SendResult, self._json(response)).duplicate

    async def cadence(self) -> api.Cadence:
        response = await self._request("GET", "/v1/cadence", alone=True)
        return _model(api.Cadence, self._json(response))

    async def poll(
        self, mailbox_id: bytes, key: SigningKey, ack_ids: Sequence[bytes], limit: int
    ) -> api.PollResult:
        path = f"/v1/mailboxes/{b64.encode(mailbox_id)}/poll"
        response = await self._signed(
            "POST", path, key, body=api.Poll(ack=list(ack_ids), limit=limit), alone=True
        )
        return _model(api.PollResult, self._json(response))

    async def long_poll(
        self, mailbox_id: bytes, key: SigningKey, ack_ids: Sequence[bytes], limit: int, wait_ms: int
    ) -> api.PollResult:
        """:meth:`poll` that the relay holds up to ``wait_ms`` while the mailbox is empty, on
        the pooled connections (relay-protocol §6)."""
        path = f"/v1/mailboxes/{b64.encode(mailbox_id)}/poll"
        body = api.Poll(ack=list(ack_ids), limit=limit, wait_ms=wait_ms)
        held_s = wait_ms / 1000 if wait_ms else None
        response = await self._signed("POST", path, key, body=body, held_s=held_s)
        return _model(api.PollResult, self._json(response))

    # ---------------------------------------------------------------- attachments (relay-protocol §9)
    async def create_attachment(
        self, device: DeviceCredentials, length: int, recipients: int
    ) -> tuple[bytes, bytes]:
        """Reserve a blob of ``length`` bytes: its id and upload token. Each attachment call goes
        on a connection of its own, so the relay cannot tie the blob to our other calls by it."""
        content = json.dumps({"length": length, "recipients": recipients}).encode()
        response = await self._send(
            "POST", "/v1/attachments", {"authorization": device.header()}, content, True
        )
        if response.status_code >= 400:
            raise _relay_error(response)
        try:
            created = _object(self._json(response))
            return (
                b64.decode(str(created["attachment_id"]), length=ATTACHMENT_ID_LENGTH),
                b64.decode(str(created["upload_token"]), length=UPLOAD_TOKEN_LENGTH),
            )
        except (KeyError, DecodeError):
            raise RelayError(
                response.status_code, "bad_reply", "the relay's reply names no attachment"
            ) from None

    async def attachment_offset(self, attachment_id: bytes, token: bytes) -> int:
        """How far the upload has got (the relay's ``Upload-Offset``)."""
        path = f"/v1/attachments/{b64.encode(attachment_id)}"
        response = await self._request(
            "HEAD", path, headers={"sotto-upload-token": b64.encode(token)}, alone=True
        )
        return _offset(response)

    async def upload_attachment_chunk(
        self, attachment_id: bytes, token: bytes, offset: int, data: bytes
    ) -> int:
        """Append ``data`` at ``offset``; where the upload is now."""
        path = f"/v1/attachments/{b64.encode(attachment_id)}"
        headers = {
            "sotto-upload-token": b64.encode(token),
            "upload-offset": str(offset),
            "content-type": "application/octet-stream",
        }
        response = await self._send("PATCH", path, headers, data, True)
        if response.status_code >= 400:
            raise _relay_error(response)
        return _offset(response)

    async def download_attachment(
        self, attachment_id: bytes, start: int, write: Callable[[bytes], Awaitable[None]]
    ) -> None:
        """Stream the blob from ``start`` into ``write``, chunk by chunk (in ranges of
        ``download_piece`` bytes, one call each, when answers are bounded in size)."""
        piece = self._download_piece
        if piece is None:
            await self._download_range(attachment_id, start, None, write)
            return
        while True:
            length, got = await self._download_range(attachment_id, start, start + piece - 1, write)
            start += got
            if got < piece or start >= length:  # a short piece: the caller sees the blob short
                return

    async def _download_range(
        self, attachment_id: bytes, start: int, last: int | None, write: Callable[[bytes], Awaitable[None]]
    ) -> tuple[int, int]:
        """Bytes ``start`` to ``last`` (or to the end) of the blob into ``write``; with ``last``,
        the whole blob's length (from the answer's ``Content-Range``), and the bytes written."""
        url = f"{self.url}/v1/attachments/{b64.encode(attachment_id)}"
        if last is not None:
            headers = {"range": f"bytes={start}-{last}"}
        else:
            headers = {"range": f"bytes={start}-"} if start else {}
        try:
            async with self._fresh.stream("GET", url, headers=headers) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _relay_error(response)
                if response.status_code != (206 if headers else 200):
                    raise RelayError(response.status_code, "bad_reply", "the relay did not send the blob")
                length, got = 0 if last is None else _blob_length(response), 0
                async for chunk in response.aiter_bytes():
                    await write(chunk)
                    got += len(chunk)
                return length, got
        except httpx.HTTPError as e:
            raise RelayUnavailableError(f"GET request failed: {type(e).__name__}") from None

    async def aclose(self) -> None:
        if self._sender is not None:
            await self._sender.close()

    async def connect(self) -> DrainConnection:
        if self._long_poll:
            from sotto.client.longpoll import LongPollDrain  # noqa: PLC0415 (it imports this module)

            return LongPollDrain(self.long_poll)
        drain = WebSocketDrain(await self._open_socket(self.url))
        try:
            await drain.start()
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):  # a closed coroutine may not wait
                await drain.close()
            raise
        return drain


def _offset(response: httpx.Response) -> int:
    try:
        return int(response.headers["upload-offset"])
    except (KeyError, ValueError):
        raise RelayError(
            response.status_code, "bad_reply", "the relay's reply has no Upload-Offset"
        ) from None


def _blob_length(response: httpx.Response) -> int:
    """The whole blob's length, from a range answer's ``Content-Range`` (``bytes a-b/length``)."""
    try:
        return int(response.headers["content-range"].rsplit("/", 1)[1])
    except (KeyError, ValueError, IndexError):
        raise RelayError(response.status_code, "bad_reply", "the relay's answer has no length") from None


def _model(model: type[M], value: Any) -> M:
    try:
        return model.model_validate(value)
    except ValueError:
        raise RelayError(200, "bad_reply", f"the relay's reply is not a {model.__name__}") from None


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RelayError(200, "bad_reply", "the relay's reply is not an object")
    return value


_CLOSED = object()


class WebSocketDrain:
    """The delivery WebSocket, with a reader task that sorts frames (see the module docstring)."""

    def __init__(self, socket: Socket) -> None:
        self._socket = socket
        self._nonce = b""
        self._envelopes: asyncio.Queue[frames.Envelope | object] = asyncio.Queue()
        self._subscriptions: deque[asyncio.Future[frames.Subscribed]] = deque()
        self._reader: asyncio.Task[None] | None = None
        self._closed_reason: str | None = None

    async def start(self) -> None:
        """Read the challenge (the first frame), then start the reader."""
        try:
            text = await asyncio.wait_for(self._socket.recv(), CONNECT_TIMEOUT_S)
            frame = frames.decode_server_frame(text)
        except (OSError, TimeoutError, websockets.WebSocketException, DecodeError) as e:
            raise RelayUnavailableError(f"no challenge from the relay: {type(e).__name__}") from None
        if not isinstance(frame, frames.Challenge):
            raise RelayUnavailableError("the relay did not start with a challenge")
        self._nonce = frame.nonce
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for text in self._socket:
                try:
                    frame = frames.decode_server_frame(text)
                except DecodeError:
                    continue  # a frame we cannot read is skipped; the relay's own frames always parse
                if isinstance(frame, frames.Envelope):
                    self._envelopes.put_nowait(frame)
                elif isinstance(frame, frames.Subscribed) and self._subscriptions:
                    waiter = self._subscriptions.popleft()
                    if not waiter.done():
                        waiter.set_result(frame)
            self._closed_reason = f"closed by the relay ({self._socket.close_code})"
        except (OSError, websockets.WebSocketException) as e:
            self._closed_reason = f"connection lost ({type(e).__name__})"
        finally:
            if self._closed_reason is None:
                self._closed_reason = "closed"
            self._envelopes.put_nowait(_CLOSED)
            while self._subscriptions:
                waiter = self._subscriptions.popleft()
                if not waiter.done():
                    waiter.set_exception(RelayUnavailableError(self._closed_reason))

    async def _send(self, frame: frames.ClientFrame) -> None:
        if self._closed_reason is not None:
            raise RelayUnavailableError(self._closed_reason)
        try:
            await self._socket.send(frames.encode(frame))
        except (OSError, websockets.WebSocketException) as e:
            raise RelayUnavailableError(f"connection lost ({type(e).__name__})") from None

    async def subscribe(self, mailboxes: Mapping[bytes, SigningKey]) -> frames.Subscribed:
        """Prove each mailbox key on this connection's challenge; the relay's answer.

        Sent in frames of at most :data:`SUBSCRIBE_BATCH` proofs, so a frame stays well under
        the relay's size limit however many mailboxes we hold.
        """
        proofs = [
            frames.MailboxProof(mailbox_id, key.sign(auth.drain_message(self._nonce, mailbox_id)))
            for mailbox_id, key in mailboxes.items()
        ]
        accepted: list[bytes] = []
        refused: list[bytes] = []
        for start in range(0, len(proofs), SUBSCRIBE_BATCH):
            waiter: asyncio.Future[frames.Subscribed] = asyncio.get_running_loop().create_future()
            self._subscriptions.append(waiter)
            try:
                await self._send(frames.Subscribe(tuple(proofs[start : start + SUBSCRIBE_BATCH])))
                answer = await asyncio.wait_for(asyncio.shield(waiter), HTTP_TIMEOUT_S)
            except TimeoutError:
                raise RelayUnavailableError("the relay did not answer the subscription") from None
            finally:
                _seen(waiter)
            accepted.extend(answer.mailboxes)
            refused.extend(answer.refused)
        return frames.Subscribed(tuple(accepted), tuple(refused))

    async def receive(self, timeout: float | None = None) -> frames.Envelope | None:
        try:
            item = await asyncio.wait_for(self._envelopes.get(), timeout)
        except TimeoutError:
            return None
        if item is _CLOSED:
            self._envelopes.put_nowait(_CLOSED)  # every later receive sees the end too
            raise RelayUnavailableError(self._closed_reason or "closed")
        assert isinstance(item, frames.Envelope)
        return item

    async def ack(self, refs: Sequence[tuple[bytes, bytes]]) -> None:
        """Acknowledge envelopes; an empty ack is the keep-alive the relay's idle timer counts."""
        await self._send(frames.Ack(tuple(frames.EnvelopeRef(m, i) for m, i in refs)))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._socket.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

    async def __aenter__(self) -> WebSocketDrain:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class WebSocketSender:
    """The send connection: a WebSocket that subscribes to nothing and carries ``send`` frames.

    Cheaper per envelope than an HTTP request, and apart from the drain connection, so what we
    send is not tied to the mailboxes we read (relay-protocol §4). Each send waits for its own
    ``sent`` / ``send_failed`` answer, matched by envelope id; a lost connection fails the sends
    in flight with RelayUnavailableError (the outbox retries them under the same ids, and the
    relay answers "duplicate" for any it had stored).
    """

    def __init__(self, url: str, open_socket: SocketOpener | None = None) -> None:
        self._url = url
        self._open_socket: SocketOpener = open_socket or _open_socket
        self._socket: Socket | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[bytes, list[asyncio.Future[frames.Sent | frames.SendFailed]]] = {}
        self._connecting = asyncio.Lock()

    async def _connected(self) -> Socket:
        async with self._connecting:
            if self._socket is None:
                socket = await self._open_socket(self._url)
                try:
                    first = frames.decode_server_frame(
                        await asyncio.wait_for(socket.recv(), CONNECT_TIMEOUT_S)
                    )
                except (OSError, TimeoutError, websockets.WebSocketException, DecodeError) as e:
                    await socket.close()
                    raise RelayUnavailableError(f"no challenge from the relay: {type(e).__name__}") from None
                if not isinstance(first, frames.Challenge):
                    await socket.close()
                    raise RelayUnavailableError("the relay did not start with a challenge")
                self._socket = socket
                self._reader = asyncio.create_task(self._read(socket))
            return self._socket

    async def _read(self, socket: Socket) -> None:
        reason = "closed"
        try:
            async for text in socket:
                try:
                    frame = frames.decode_server_frame(text)
                except DecodeError:
                    continue
                if isinstance(frame, frames.Sent | frames.SendFailed):
                    self._answer(frame)
            reason = f"closed by the relay ({socket.close_code})"
        except (OSError, websockets.WebSocketException) as e:
            reason = f"connection lost ({type(e).__name__})"
        finally:
            if self._socket is socket:
                self._socket = None
            pending, self._pending = self._pending, {}
            for waiters in pending.values():
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(RelayUnavailableError(reason))

    def _answer(self, frame: frames.Sent | frames.SendFailed) -> None:
        waiters = self._pending.get(frame.id)
        if not waiters:
            return
        waiter = waiters.pop(0)
        if not waiters:
            del self._pending[frame.id]
        if not waiter.done():
            waiter.set_result(frame)

    async def send(self, mailbox_id: bytes, token: bytes, message_id: bytes, payload: bytes) -> bool:
        socket = await self._connected()
        waiter: asyncio.Future[frames.Sent | frames.SendFailed] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(message_id, []).append(waiter)
        try:
            await socket.send(frames.encode(frames.Send(mailbox_id, token, message_id, payload)))
            answer = await asyncio.wait_for(asyncio.shield(waiter), HTTP_TIMEOUT_S)
        except (OSError, websockets.WebSocketException) as e:
            raise RelayUnavailableError(f"connection lost ({type(e).__name__})") from None
        except TimeoutError:
            raise RelayUnavailableError("the relay did not answer the send") from None
        finally:
            waiters = self._pending.get(message_id)
            if waiters and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._pending[message_id]
            _seen(waiter)
        if isinstance(answer, frames.SendFailed):
            # The relay's codes: "not_found" (unknown mailbox or wrong token), the quotas'
            # "mailbox_full" and "relay_full" (507 over HTTP), or "unavailable".
            status = _SEND_FAILED_STATUS.get(answer.code, 503)
            raise relay_error(status, answer.code, "the relay refused the envelope")
        return answer.duplicate

    async def close(self) -> None:
        socket, self._socket = self._socket, None
        if socket is not None:
            with contextlib.suppress(Exception):
                await socket.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader


_SEND_FAILED_STATUS = {"not_found": 404, "mailbox_full": 507, "relay_full": 507}
"""The HTTP status a ``send_failed`` code stands for, so both paths raise the same error."""


def _seen(waiter: asyncio.Future[Any]) -> None:
    """Mark a waiter's failure as handled: when the socket's own error reached the caller first,
    the reader's failing of its waiters would otherwise be reported as never retrieved."""
    if waiter.done() and not waiter.cancelled():
        waiter.exception()


async def _open_socket(url: str) -> ClientConnection:
    ws_url = "ws" + url.removeprefix("http") + "/v1/ws"
    try:
        return await asyncio.wait_for(
            websockets.connect(
                ws_url, max_size=MAX_FRAME_BYTES, open_timeout=CONNECT_TIMEOUT_S, compression=None
            ),
            CONNECT_TIMEOUT_S,
        )
    except (OSError, TimeoutError, websockets.WebSocketException) as e:
        raise RelayUnavailableError(f"connection failed: {type(e).__name__}") from None


class HttpNetwork:
    """Relays over real HTTP(S) and WebSockets: one pooled httpx client for all of them."""

    def __init__(
        self,
        *,
        timeout: float = HTTP_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
        websocket_sends: bool = True,
        keep_alive: bool = True,
        clock_ms: Callable[[], int] | None = None,
        fresh_transport: httpx.AsyncBaseTransport | None = None,
        open_socket: SocketOpener | None = None,
        max_work_bits: int = work_solver.DEFAULT_MAX_WORK_BITS,
        clients: tuple[httpx.AsyncClient, httpx.AsyncClient] | None = None,
        long_poll: bool = False,
        download_piece: int | None = None,
    ) -> None:
        """``long_poll``: default mode receives by long polls, not a WebSocket (through a
        forwarder: :mod:`sotto.client.longpoll`). ``download_piece``: the most bytes of a blob
        one answer carries (through a forwarder: a sealed answer is bounded).

        ``keep_alive=False``: every HTTP request on a connection of its own (cadence mode's
        clients use it, so that no call of theirs shares a connection with another).

        ``transport`` / ``fresh_transport`` (the one for requests on connections of their own,
        ``transport`` unless given) and ``open_socket`` replace the network (a simulation runs
        the relay in process); ``clock_ms`` is the time signed calls carry; ``max_work_bits``
        the hardest proof-of-work challenge solved (above it, WorkTooHardError). ``clients``
        (pooled, fresh) replace the two httpx clients themselves, ``timeout`` and the
        transports then unused: anything with the ``request`` and ``aclose`` that
        :class:`HttpRelay` calls (a simulation's in-process HTTP)."""
        if clients is not None:
            self._http, self._fresh = clients if keep_alive else (clients[1], clients[1])
        else:
            # Cadence mode's calls: no connection is kept alive, so each request opens its own
            # and the relay cannot tie two of them together by their connection.
            self._fresh = httpx.AsyncClient(
                timeout=timeout,
                transport=fresh_transport or transport,
                follow_redirects=False,
                headers={"user-agent": "sotto"},
                limits=httpx.Limits(max_keepalive_connections=0),
            )
            self._http = (
                httpx.AsyncClient(
                    timeout=timeout,
                    transport=transport,
                    follow_redirects=False,
                    headers={"user-agent": "sotto"},
                )
                if keep_alive
                else self._fresh
            )
        self._websocket_sends = websocket_sends
        self._clock_ms = clock_ms
        self._open_socket = open_socket
        self._max_work_bits = max_work_bits
        self._long_poll = long_poll
        self._download_piece = download_piece
        self._relays: dict[str, HttpRelay] = {}

    def relay(self, url: str) -> HttpRelay:
        key = url.rstrip("/")
        found = self._relays.get(key)
        if found is None:
            found = self._relays[key] = HttpRelay(
                key,
                self._http,
                websocket_sends=self._websocket_sends,
                fresh=self._fresh,
                clock_ms=self._clock_ms,
                open_socket=self._open_socket,
                max_work_bits=self._max_work_bits,
                long_poll=self._long_poll,
                download_piece=self._download_piece,
            )
        return found

    async def aclose(self) -> None:
        for relay in self._relays.values():
            await relay.aclose()
        await self._http.aclose()
        if self._fresh is not self._http:
            await self._fresh.aclose()
