"""The client's flows, written once: a store transaction and values in, events and commands out.

Each flow runs inside one :meth:`~sotto.store.interfaces.Store.transaction`, given a
:class:`~sotto.client.flows.context.Context` (the transaction, our account, ``now_ms``, ``rng``).
It does no network I/O, never awaits and never reads the clock or the OS RNG. The SDK
(:mod:`sotto.client.sdk`) fetches what a flow needs from the relay first (a prekey bundle), runs
the flow in a transaction, and after the commit carries out the
:data:`~sotto.client.flows.context.Command` values the flow returned (register a mailbox, delete
one, revoke an invite token) and then flushes the outbox. Tests drive the same functions with
the in-memory store and an in-memory relay.

Every outgoing envelope is::

    payload = pad(seal_v1(our identity → their identity,
                          USMC{type, self-issued sender certificate,
                               session.encrypt(pad(content)) | group_encrypt(pad(content))}))

Modules: :mod:`.context` (who we are, commands, outcomes), :mod:`.account` (registration and
prekeys), :mod:`.mailboxes` (per-contact mailboxes, rotation), :mod:`.sending` (1:1 texts,
receipts, typing, the outbox), :mod:`.groups` (sender keys over per-member sealed envelopes),
:mod:`.invites` (both sides of the invite handshake), :mod:`.prekeys` (PreKey messages and
their bookkeeping), :mod:`.receiving` (opening and applying envelopes, and the receive policy),
:mod:`.safety` (safety numbers).
"""
