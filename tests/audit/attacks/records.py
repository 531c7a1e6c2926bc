"""Hand-made records of the operator's view, for tests of single attacks."""

from __future__ import annotations

from sotto.server.observer import HttpExchange, WsFrame

T0_US = 1_800_000_000_000_000


def at(seconds: float) -> int:
    return T0_US + round(seconds * 1_000_000)


def http(
    seconds: float,
    method: str,
    path: str,
    *,
    conn: int = 0,
    addr: str = "10.0.0.1",
    auth: str | None = None,
    mailboxes: tuple[str, ...] = (),
    messages: tuple[str, ...] = (),
    accounts: tuple[str, ...] = (),
) -> HttpExchange:
    """One exchange; ``auth``: the account whose device credentials it carries."""
    headers = (("authorization", "Sotto x"),) if auth else ()
    return HttpExchange(
        t_us=at(seconds),
        conn=conn,
        addr=addr,
        port=50_000 + conn,
        method=method,
        path=path,
        query="",
        headers=headers,
        request_bytes=100,
        status=200,
        response_bytes=10,
        duration_us=0,
        mailboxes=mailboxes,
        messages=messages,
        accounts=(*accounts, auth) if auth else accounts,
    )


def poll(
    seconds: float, mailbox: str, *, envelopes: tuple[str, ...] = (), conn: int = 0, addr: str = "10.0.0.1"
) -> HttpExchange:
    path = f"/v1/mailboxes/{mailbox}/poll"
    return http(seconds, "POST", path, mailboxes=(mailbox,), messages=envelopes, conn=conn, addr=addr)


def send(seconds: float, mailbox: str, *, conn: int = 0, addr: str = "10.0.0.1") -> HttpExchange:
    return http(
        seconds, "POST", f"/v1/mailboxes/{mailbox}/messages", mailboxes=(mailbox,), conn=conn, addr=addr
    )


def key_counts(seconds: float, account: str, *, conn: int = 0, addr: str = "10.0.0.1") -> HttpExchange:
    return http(seconds, "GET", "/v1/accounts/me/keys", auth=account, conn=conn, addr=addr)


def create(seconds: float, mailbox: str, *, conn: int = 0, addr: str = "10.0.0.1") -> HttpExchange:
    return http(seconds, "POST", "/v1/mailboxes", mailboxes=(mailbox,), conn=conn, addr=addr)


def bundle(
    seconds: float, account: str, *, auth: str | None = None, conn: int = 0, addr: str = "10.0.0.1"
) -> HttpExchange:
    path = f"/v1/accounts/{account}/bundle"
    return http(seconds, "GET", path, accounts=(account,), auth=auth, conn=conn, addr=addr)


def frame(seconds: float, direction: str, kind: str, mailboxes: tuple[str, ...], *, conn: int = 0) -> WsFrame:
    return WsFrame(at(seconds), conn, "10.0.0.1", 50_000 + conn, direction, "text", kind, 100, mailboxes, ())
