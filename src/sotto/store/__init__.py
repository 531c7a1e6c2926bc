"""The client's local store: typed records, one Unit-of-Work interface, and its backends.

* :mod:`sotto.store.model` — the records the client keeps (frozen dataclasses; secrets hidden in reprs);
* :mod:`sotto.store.interfaces` — the :class:`~sotto.store.interfaces.Store` and
  :class:`~sotto.store.interfaces.Transaction` protocols every backend satisfies;
* :mod:`sotto.store.memory` — the in-memory reference backend (tests, ephemeral clients);
* :mod:`sotto.store.sqlite` — the SQLite backend, every sensitive value encrypted at rest.
"""
