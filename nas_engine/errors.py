"""The errors a user's input can raise, in a module of their own so that every layer can
raise them without importing the layers above it."""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad input from the user; the message is one line."""


class TrainingConfigError(ValueError):
    """Bad training settings or data; the message is one line."""
