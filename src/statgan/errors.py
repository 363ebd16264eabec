"""User-facing errors.

Every mistake a user can make (bad config value, missing dataset, corrupt checkpoint) raises a
:class:`StatganError` whose message is one line naming the offending value and what was expected.
The CLI prints it as ``statgan: error: <message>`` and exits with status 2 instead of a traceback.
"""

from __future__ import annotations


class StatganError(Exception):
    """An error caused by user input, reported as a single line without a traceback."""


class ConfigError(StatganError, ValueError):
    """A configuration key, type or value is invalid."""


class DatasetError(StatganError, FileNotFoundError):
    """A dataset is missing or malformed."""


class CheckpointError(StatganError):
    """A checkpoint is missing, corrupt or incompatible."""
