"""Every action of the chat app has a key, every key names an action that exists, and help
lists them all."""

from __future__ import annotations

from sotto.tui import keys
from sotto.tui.app import ChatApp, Composer
from sotto.tui.conversations import ConversationList
from sotto.tui.log import MessageLog
from sotto.tui.requests import RequestsScreen
from sotto.tui.results import SearchResultsScreen

PANES = {
    "conversations": ConversationList,
    "log": MessageLog,
    "composer": Composer,
    "requests": RequestsScreen,
    "results": SearchResultsScreen,
}


def own_actions(cls: type) -> set[str]:
    """The ``action_*`` methods ``cls`` defines itself."""
    return {name.removeprefix("action_") for name in vars(cls) if name.startswith("action_")}


def bound(cls: type) -> dict[str, str]:
    """Action -> keys, from the class's bindings."""
    found: dict[str, str] = {}
    for binding in cls.BINDINGS:  # type: ignore[attr-defined]
        found[binding.action] = binding.key
    return found


def test_every_action_of_the_app_and_its_panes_has_a_key() -> None:
    for cls in (ChatApp, MessageLog, ConversationList, RequestsScreen, SearchResultsScreen):
        actions = own_actions(cls)
        assert actions, cls
        missing = actions - set(bound(cls))
        assert not missing, f"{cls.__name__} actions without a key: {sorted(missing)}"


def test_every_key_names_an_action_that_exists() -> None:
    for key in keys.APP_KEYS:
        assert hasattr(ChatApp, f"action_{key.action}"), key
    for key in keys.PANE_KEYS:
        assert hasattr(PANES[key.pane], f"action_{key.action}"), key
    assert hasattr(ChatApp, f"action_{keys.PALETTE_KEY.action}")
    assert keys.PALETTE_KEY.keys == ChatApp.COMMAND_PALETTE_BINDING


def test_the_app_binds_exactly_the_table() -> None:
    assert bound(ChatApp) == {k.action: k.keys for k in keys.APP_KEYS}
    assert bound(MessageLog) == {k.action: k.keys for k in keys.PANE_KEYS if k.pane == "log"}
    assert bound(ConversationList) == {k.action: k.keys for k in keys.PANE_KEYS if k.pane == "conversations"}
    assert bound(RequestsScreen) == {k.action: k.keys for k in keys.PANE_KEYS if k.pane == "requests"}
    assert bound(SearchResultsScreen) == {k.action: k.keys for k in keys.PANE_KEYS if k.pane == "results"}


def test_no_two_app_actions_share_a_key() -> None:
    seen: dict[str, str] = {}
    for key in keys.APP_KEYS:
        for name in key.keys.split(","):
            assert name not in seen, f"{name} is bound to {seen.get(name)} and {key.action}"
            seen[name] = key.action


def test_scli_keys_are_there() -> None:
    names = {name for k in (*keys.APP_KEYS, *keys.PANE_KEYS) for name in k.keys.split(",")}
    assert {"j", "k", "g", "G", "tab", "slash", "colon"} <= names


def test_help_lists_every_key() -> None:
    rows = keys.help_rows()
    described = {d for _, d in rows}
    for key in (*keys.APP_KEYS, *keys.PANE_KEYS, keys.PALETTE_KEY):
        assert key.description in described
