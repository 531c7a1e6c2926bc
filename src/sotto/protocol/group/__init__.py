"""Sender keys: one signed hash chain per group sender, as libsignal's group messaging does it."""

from sotto.protocol.group.chain import SenderChainKey, SenderMessageKey
from sotto.protocol.group.group_cipher import (
    create_distribution,
    group_decrypt,
    group_encrypt,
    process_distribution,
)
from sotto.protocol.group.messages import SenderKeyDistributionMessage, SenderKeyMessage
from sotto.protocol.group.sender_key import SenderKeyRecord, SenderKeyState

__all__ = [
    "SenderChainKey",
    "SenderKeyDistributionMessage",
    "SenderKeyMessage",
    "SenderKeyRecord",
    "SenderKeyState",
    "SenderMessageKey",
    "create_distribution",
    "group_decrypt",
    "group_encrypt",
    "process_distribution",
]
