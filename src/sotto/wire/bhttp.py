"""Binary HTTP messages (RFC 9292): the plaintext an Oblivious HTTP encapsulation carries.

A message is a framing indicator, control data (a request's method, scheme, authority and path;
a response's status, after any informational responses), a header section, content, a trailer
section and zero padding; every length and number is a QUIC variable-length integer (RFC 9000
§16), not necessarily in its shortest form. Known-length messages (framing 0 and 1) prefix each
section with its length; indeterminate-length ones (2 and 3) end each field section with a zero
and send content as non-empty chunks ended by a zero. Both are decoded; the encoder writes either.

Contract: :func:`decode_request` and :func:`decode_response` raise :class:`BinaryHttpError` (a
:class:`~sotto.errors.DecodeError`) and nothing else, on any input::

    DecodeError
    └── BinaryHttpError             a binary HTTP message that does not parse
        ├── TruncatedMessageError   a varint or a length runs past the end, or the message stops
        │                           anywhere but before an empty trailing section (RFC 9292 §3.8)
        ├── MessageLimitError       larger than the decoder's :class:`Limits` (bytes or counts)
        ├── InvalidFramingError     an unknown framing indicator, or a response where a request
        │                           was expected (and the other way round)
        ├── InvalidControlDataError a method that is not a token, a scheme, authority or path with
        │                           control bytes, a status outside 100..599 where it stands
        ├── InvalidFieldError       a field name that is not a token, a value with NUL, CR or LF or
        │                           that starts or ends with white space, a forbidden pseudo-field
        └── NonZeroPaddingError     bytes after the message that are not zero

The decoder is stricter than RFC 9292 in one way, on purpose: scheme, authority and path must be
visible ASCII, so a decoded request can never be split when it is replayed as HTTP/1.1. The
encoders refuse (``ValueError``) whatever the decoders would reject, so what one side encodes the
other decodes. Decoded messages keep field lines in order, names as sent (no case folding), and
repeated names as repeated lines. The ``repr`` of a message shows no path, field value or content:
in Sotto those are mailbox ids, tokens and ciphertexts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sotto.errors import DecodeError

__all__ = [
    "DEFAULT_LIMITS",
    "MAX_VARINT",
    "MEDIA_TYPE",
    "BinaryHttpError",
    "Field",
    "InformationalResponse",
    "InvalidControlDataError",
    "InvalidFieldError",
    "InvalidFramingError",
    "Limits",
    "MessageLimitError",
    "NonZeroPaddingError",
    "Request",
    "Response",
    "TruncatedMessageError",
    "decode_request",
    "decode_response",
    "decode_varint",
    "encode_request",
    "encode_response",
    "encode_varint",
]

MEDIA_TYPE: Final = "message/bhttp"

MAX_VARINT: Final = (1 << 62) - 1
"""The largest value a QUIC variable-length integer holds."""

KNOWN_LENGTH_REQUEST: Final = 0
KNOWN_LENGTH_RESPONSE: Final = 1
INDETERMINATE_LENGTH_REQUEST: Final = 2
INDETERMINATE_LENGTH_RESPONSE: Final = 3

Field = tuple[bytes, bytes]
"""One field line: its name and its value, as bytes."""

_TCHAR: Final = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_SCHEME_FIRST: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_SCHEME_REST: Final = _SCHEME_FIRST | frozenset(b"0123456789+-.")
_VISIBLE: Final = frozenset(range(0x21, 0x7F))
_FORBIDDEN_PSEUDO: Final = frozenset({b":method", b":scheme", b":authority", b":path", b":status"})
_WHITESPACE: Final = frozenset(b" \t")


# ---------------------------------------------------------------------------------------- errors
class BinaryHttpError(DecodeError):
    """Bytes that are not a valid binary HTTP message of the expected kind."""


class TruncatedMessageError(BinaryHttpError):
    """A varint or a length-prefixed part runs past the end, or the message stops mid-way."""


class MessageLimitError(BinaryHttpError):
    """A message, section, content or count larger than the decoder's :class:`Limits`."""


class InvalidFramingError(BinaryHttpError):
    """An unknown framing indicator, or a message of the other kind (request for response)."""


class InvalidControlDataError(BinaryHttpError):
    """A method, scheme, authority, path or status code that RFC 9292 makes invalid."""


class InvalidFieldError(BinaryHttpError):
    """A field line that RFC 9292 makes invalid (name, value or pseudo-field rules)."""


class NonZeroPaddingError(BinaryHttpError):
    """Bytes after the message that are not zero (padding must be zero-valued)."""


# ---------------------------------------------------------------------------------------- values
@dataclass(frozen=True, slots=True)
class Limits:
    """The largest message a decoder accepts; anything larger is :class:`MessageLimitError`.

    The defaults fit every request and reply of the relay's API (the largest, a prekey upload of
    100 Kyber keys in JSON, is about 230 KB) with room to spare, and bound what one malicious
    message can make a gateway allocate.
    """

    max_message: int = 1 << 20
    """Bytes of the whole encoded message, padding included."""
    max_control: int = 8192
    """Bytes of each of method, scheme, authority and path."""
    max_field_section: int = 16384
    """Bytes of one header or trailer section (its field lines with their length prefixes)."""
    max_fields: int = 128
    """Field lines in one section."""
    max_content: int = 1 << 20
    """Bytes of content."""
    max_informational: int = 8
    """Informational (1xx) responses before the final one."""


DEFAULT_LIMITS: Final = Limits()


@dataclass(frozen=True, slots=True)
class Request:
    """An HTTP request: control data, header fields, content and trailer fields."""

    method: bytes
    scheme: bytes
    authority: bytes
    path: bytes
    headers: tuple[Field, ...] = ()
    content: bytes = b""
    trailers: tuple[Field, ...] = ()

    def __repr__(self) -> str:
        return (
            f"Request({self.method.decode('ascii', 'replace')}, {len(self.headers)} header fields, "
            f"{len(self.content)} B content, {len(self.trailers)} trailer fields)"
        )


@dataclass(frozen=True, slots=True)
class InformationalResponse:
    """An interim (1xx) response and its header fields."""

    status: int
    headers: tuple[Field, ...] = ()

    def __repr__(self) -> str:
        return f"InformationalResponse({self.status}, {len(self.headers)} header fields)"


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP response: any informational responses, then the final status, fields and content."""

    status: int
    headers: tuple[Field, ...] = ()
    content: bytes = b""
    trailers: tuple[Field, ...] = ()
    informational: tuple[InformationalResponse, ...] = ()

    def __repr__(self) -> str:
        return (
            f"Response({self.status}, {len(self.headers)} header fields, {len(self.content)} B content, "
            f"{len(self.trailers)} trailer fields, {len(self.informational)} informational)"
        )


# ---------------------------------------------------------------------------------------- varints
def encode_varint(value: int) -> bytes:
    """The shortest QUIC variable-length encoding of ``value`` (0 to :data:`MAX_VARINT`)."""
    if value < 0:
        raise ValueError(f"a varint is not negative, got {value}")
    if value < 0x40:
        return bytes((value,))
    if value < 0x4000:
        return (value | 0x4000).to_bytes(2, "big")
    if value < 0x4000_0000:
        return (value | 0x8000_0000).to_bytes(4, "big")
    if value <= MAX_VARINT:
        return (value | 0xC000_0000_0000_0000).to_bytes(8, "big")
    raise ValueError(f"a varint holds at most 2^62 - 1, got {value}")


def decode_varint(data: bytes, offset: int = 0) -> tuple[int, int]:
    """The varint at ``offset`` and the offset after it; :class:`TruncatedMessageError` if cut."""
    if offset >= len(data):
        raise TruncatedMessageError(f"the message ends where a varint starts (offset {offset})")
    first = data[offset]
    size = 1 << (first >> 6)
    end = offset + size
    if end > len(data):
        raise TruncatedMessageError(f"a {size}-byte varint at offset {offset} runs past the end")
    if size == 1:
        return first, end
    return int.from_bytes(data[offset:end], "big") & ((1 << (8 * size - 2)) - 1), end


# ---------------------------------------------------------------------------------------- checks
def _field_problem(name: bytes, value: bytes) -> str | None:
    """Why a field line is invalid (ignoring where it stands), or None."""
    token = name[1:] if name[:1] == b":" else name
    if not token or not _TCHAR.issuperset(token):
        return "a field name that is not a token"
    if b"\x00" in value or b"\r" in value or b"\n" in value:
        return "a field value with NUL, CR or LF"
    if value and (value[0] in _WHITESPACE or value[-1] in _WHITESPACE):
        return "a field value that starts or ends with white space"
    return None


def _section_problem(fields: tuple[Field, ...] | list[Field], trailers: bool) -> str | None:
    """Why a field section is invalid (pseudo-field rules, RFC 9292 §3.6), or None."""
    regular_seen = False
    for name, value in fields:
        problem = _field_problem(name, value)
        if problem is not None:
            return problem
        if name[:1] == b":":
            if trailers:
                return "a pseudo-field in a trailer section"
            if name in _FORBIDDEN_PSEUDO:
                return "a field named as request or response control data"
            if regular_seen:
                return "a pseudo-field after a regular field"
        else:
            regular_seen = True
    return None


def _control_problem(method: bytes, scheme: bytes, authority: bytes, path: bytes) -> str | None:
    """Why request control data is invalid, or None."""
    if not method or not _TCHAR.issuperset(method):
        return "a method that is not a token"
    if scheme and (scheme[0] not in _SCHEME_FIRST or not _SCHEME_REST.issuperset(scheme)):
        return "a scheme that is not a URI scheme"
    if not _VISIBLE.issuperset(authority):
        return "an authority with bytes other than visible ASCII"
    if not _VISIBLE.issuperset(path):
        return "a path with bytes other than visible ASCII"
    return None


# ---------------------------------------------------------------------------------------- decoding
class _Reader:
    """A cursor over one message, checking every length against the data's end and the limits."""

    __slots__ = ("data", "limits", "pos")

    def __init__(self, data: bytes, limits: Limits) -> None:
        self.data = data
        self.pos = 0
        self.limits = limits

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def varint(self) -> int:
        value, self.pos = decode_varint(self.data, self.pos)
        return value

    def take(self, length: int, what: str) -> bytes:
        end = self.pos + length
        if end > len(self.data):
            raise TruncatedMessageError(f"{what} of {length} bytes runs past the end of its part")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def bounded(self, limit: int, what: str) -> bytes:
        """A length-prefixed part no larger than ``limit``."""
        length = self.varint()
        if length > limit:
            raise MessageLimitError(f"{what} of {length} bytes is over the limit of {limit}")
        return self.take(length, what)

    def field_line(self, name_length: int, section: str) -> Field:
        if name_length == 0:
            raise InvalidFieldError(f"an empty field name in the {section} section")
        name = self.take(name_length, "a field name")
        value = self.take(self.varint(), "a field value")
        return name, value

    def known_section(self, section: str) -> tuple[Field, ...]:
        body = _Reader(self.bounded(self.limits.max_field_section, f"the {section} section"), self.limits)
        fields: list[Field] = []
        while not body.at_end():
            if len(fields) == self.limits.max_fields:
                raise MessageLimitError(f"more than {self.limits.max_fields} lines in the {section} section")
            fields.append(body.field_line(body.varint(), section))
        return self._checked(fields, section)

    def indeterminate_section(self, section: str) -> tuple[Field, ...]:
        start = self.pos
        fields: list[Field] = []
        while (name_length := self.varint()) != 0:
            if len(fields) == self.limits.max_fields:
                raise MessageLimitError(f"more than {self.limits.max_fields} lines in the {section} section")
            fields.append(self.field_line(name_length, section))
            if self.pos - start > self.limits.max_field_section:
                raise MessageLimitError(
                    f"the {section} section is over the limit of {self.limits.max_field_section} bytes"
                )
        return self._checked(fields, section)

    def section(self, indeterminate: bool, section: str) -> tuple[Field, ...]:
        return self.indeterminate_section(section) if indeterminate else self.known_section(section)

    def content(self, indeterminate: bool) -> bytes:
        if not indeterminate:
            return self.bounded(self.limits.max_content, "the content")
        chunks: list[bytes] = []
        total = 0
        while (length := self.varint()) != 0:
            total += length
            if total > self.limits.max_content:
                raise MessageLimitError(f"the content is over the limit of {self.limits.max_content} bytes")
            chunks.append(self.take(length, "a content chunk"))
        return b"".join(chunks)

    def padding(self) -> None:
        if self.data[self.pos :].lstrip(b"\x00"):
            raise NonZeroPaddingError("bytes after the message that are not zero")

    @staticmethod
    def _checked(fields: list[Field], section: str) -> tuple[Field, ...]:
        problem = _section_problem(fields, trailers=section == "trailer")
        if problem is not None:
            raise InvalidFieldError(f"{problem} in the {section} section")
        return tuple(fields)


def _start(data: bytes, limits: Limits) -> tuple[_Reader, int]:
    if not isinstance(data, bytes):
        raise TypeError(f"binary HTTP decodes bytes, got {type(data).__name__}")
    if len(data) > limits.max_message:
        raise MessageLimitError(f"a message of {len(data)} bytes is over the limit of {limits.max_message}")
    reader = _Reader(data, limits)
    return reader, reader.varint()


def _tail(reader: _Reader, indeterminate: bool) -> tuple[tuple[Field, ...], bytes, tuple[Field, ...]]:
    """Header section, content and trailer section, each absent if the message ends before it."""
    headers: tuple[Field, ...] = ()
    content = b""
    trailers: tuple[Field, ...] = ()
    if not reader.at_end():
        headers = reader.section(indeterminate, "header")
        if not reader.at_end():
            content = reader.content(indeterminate)
            if not reader.at_end():
                trailers = reader.section(indeterminate, "trailer")
                reader.padding()
    return headers, content, trailers


def decode_request(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Request:
    """The request that ``data`` encodes, in either framing; raises :class:`BinaryHttpError` only."""
    reader, framing = _start(data, limits)
    if framing in {KNOWN_LENGTH_RESPONSE, INDETERMINATE_LENGTH_RESPONSE}:
        raise InvalidFramingError("a response where a request was expected")
    if framing not in {KNOWN_LENGTH_REQUEST, INDETERMINATE_LENGTH_REQUEST}:
        raise InvalidFramingError(f"unknown framing indicator {framing}")
    what = "the method", "the scheme", "the authority", "the path"
    method, scheme, authority, path = (reader.bounded(limits.max_control, part) for part in what)
    problem = _control_problem(method, scheme, authority, path)
    if problem is not None:
        raise InvalidControlDataError(problem)
    headers, content, trailers = _tail(reader, framing == INDETERMINATE_LENGTH_REQUEST)
    return Request(method, scheme, authority, path, headers, content, trailers)


def decode_response(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Response:
    """The response that ``data`` encodes, in either framing; raises :class:`BinaryHttpError` only."""
    reader, framing = _start(data, limits)
    if framing in {KNOWN_LENGTH_REQUEST, INDETERMINATE_LENGTH_REQUEST}:
        raise InvalidFramingError("a request where a response was expected")
    if framing not in {KNOWN_LENGTH_RESPONSE, INDETERMINATE_LENGTH_RESPONSE}:
        raise InvalidFramingError(f"unknown framing indicator {framing}")
    indeterminate = framing == INDETERMINATE_LENGTH_RESPONSE
    informational: list[InformationalResponse] = []
    while True:
        if reader.at_end():
            raise TruncatedMessageError("the message ends before its final status code")
        status = reader.varint()
        if 200 <= status <= 599:
            break
        if not 100 <= status <= 199:
            raise InvalidControlDataError(f"status code {status} is neither informational nor final")
        if len(informational) == limits.max_informational:
            raise MessageLimitError(f"more than {limits.max_informational} informational responses")
        if reader.at_end():
            raise TruncatedMessageError("an informational response without its header section")
        informational.append(InformationalResponse(status, reader.section(indeterminate, "header")))
    headers, content, trailers = _tail(reader, indeterminate)
    return Response(status, headers, content, trailers, tuple(informational))


# ---------------------------------------------------------------------------------------- encoding
def _encode_section(fields: tuple[Field, ...], indeterminate: bool) -> bytes:
    lines = b"".join(
        encode_varint(len(name)) + name + encode_varint(len(value)) + value for name, value in fields
    )
    return lines + b"\x00" if indeterminate else encode_varint(len(lines)) + lines


def _encode_content(content: bytes, indeterminate: bool) -> bytes:
    if not indeterminate:
        return encode_varint(len(content)) + content
    return (encode_varint(len(content)) + content if content else b"") + b"\x00"


def _encode_tail(
    headers: tuple[Field, ...],
    content: bytes,
    trailers: tuple[Field, ...],
    *,
    indeterminate: bool,
    truncate: bool,
    padding: int,
) -> list[bytes]:
    for section, is_trailer in ((headers, False), (trailers, True)):
        problem = _section_problem(section, trailers=is_trailer)
        if problem is not None:
            raise ValueError(f"cannot encode {problem}")
    if padding < 0:
        raise ValueError(f"padding is not negative, got {padding}")
    parts = [
        _encode_section(headers, indeterminate),
        _encode_content(content, indeterminate),
        _encode_section(trailers, indeterminate),
    ]
    if truncate:  # RFC 9292 §3.8: empty sections at the end may be left out
        present = (bool(headers), bool(content), bool(trailers))
        while parts and not present[len(parts) - 1]:
            parts.pop()
    parts.append(bytes(padding))
    return parts


def encode_request(
    request: Request, *, indeterminate: bool = False, truncate: bool = False, padding: int = 0
) -> bytes:
    """The binary form of ``request``: known-length unless ``indeterminate`` (content as one chunk).

    ``truncate`` leaves out empty sections at the end (RFC 9292 §3.8); ``padding`` appends that
    many zero bytes. Raises ``ValueError`` for anything :func:`decode_request` would refuse.
    """
    problem = _control_problem(request.method, request.scheme, request.authority, request.path)
    if problem is not None:
        raise ValueError(f"cannot encode {problem}")
    framing = INDETERMINATE_LENGTH_REQUEST if indeterminate else KNOWN_LENGTH_REQUEST
    head = [encode_varint(framing)]
    for part in (request.method, request.scheme, request.authority, request.path):
        head += (encode_varint(len(part)), part)
    tail = _encode_tail(
        request.headers,
        request.content,
        request.trailers,
        indeterminate=indeterminate,
        truncate=truncate,
        padding=padding,
    )
    return b"".join(head + tail)


def encode_response(
    response: Response, *, indeterminate: bool = False, truncate: bool = False, padding: int = 0
) -> bytes:
    """The binary form of ``response``, with the same options as :func:`encode_request`."""
    if not 200 <= response.status <= 599:
        raise ValueError(f"a final status code is 200 to 599, got {response.status}")
    framing = INDETERMINATE_LENGTH_RESPONSE if indeterminate else KNOWN_LENGTH_RESPONSE
    head = [encode_varint(framing)]
    for interim in response.informational:
        if not 100 <= interim.status <= 199:
            raise ValueError(f"an informational status code is 100 to 199, got {interim.status}")
        problem = _section_problem(interim.headers, trailers=False)
        if problem is not None:
            raise ValueError(f"cannot encode {problem}")
        head += (encode_varint(interim.status), _encode_section(interim.headers, indeterminate))
    head.append(encode_varint(response.status))
    tail = _encode_tail(
        response.headers,
        response.content,
        response.trailers,
        indeterminate=indeterminate,
        truncate=truncate,
        padding=padding,
    )
    return b"".join(head + tail)
