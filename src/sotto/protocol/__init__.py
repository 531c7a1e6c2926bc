"""The Signal protocol, pure and synchronous, wire-compatible with libsignal 0.103.

Nothing here awaits, sleeps, opens a socket, logs or reads the clock: the time and the
randomness are arguments, state goes in and new state comes out.
"""
