"""Errors a user can hit; each message says what happened and how to fix it."""

from __future__ import annotations


class AssistantError(Exception):
    """Base of every error the assistant raises on purpose."""

    exit_code: int = 1


class ConfigError(AssistantError):
    """A setting is missing or invalid."""

    exit_code = 2


class InputError(AssistantError):
    """A path, file or argument given by the user cannot be used."""

    exit_code = 2


class IndexNotBuiltError(AssistantError):
    """No index exists for the current settings."""

    exit_code = 3


class IndexLockedError(AssistantError):
    """Another indexing run holds the lock."""

    exit_code = 4


class BackendUnavailableError(AssistantError):
    """A model or store backend cannot be used (not installed, unreachable, bad key)."""

    exit_code = 5


class ModelFileError(AssistantError):
    """A model file is missing or fails its checksum."""

    exit_code = 5


class StoreError(AssistantError):
    """The vector store failed (server down, disk full)."""

    exit_code = 6


class ServerError(AssistantError):
    """The assistant server (`assistant serve`) could not be reached or failed mid-answer."""

    exit_code = 7


class SkipFile(Exception):
    """Raised by a loader when a file cannot be indexed; the message is the reason."""
