"""``sotto chat``: a full-screen chat app in the terminal (Textual), on the client SDK.

:mod:`.app` is the app; :mod:`.keys` every key; :mod:`.conversations`, :mod:`.log` the panes;
:mod:`.commands` the ``:`` command line; :mod:`.screens` the modal screens (invite and safety
number QR codes, help); :mod:`.notify` notifications; :mod:`.model` what is shown, read from
the client. ``docs/tui.md`` describes it for people.
"""
