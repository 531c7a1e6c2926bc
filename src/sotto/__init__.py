"""Sotto: an end-to-end encrypted messenger whose server learns as little as we can measure."""

__version__ = "0.1.0"
