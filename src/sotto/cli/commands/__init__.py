"""The commands, grouped by what they touch: the relay, the account, contacts, messages, groups."""
