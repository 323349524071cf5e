"""Balise: teletransmission box for small French medical practices."""

__version__ = "0.1.0"
