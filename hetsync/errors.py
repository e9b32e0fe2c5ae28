"""Errors a user can act on. The CLI prints them as one line and exits non-zero."""


class HetsyncError(Exception):
    """Base class: the message names the problem and, where possible, the setting to change."""


class ConfigError(HetsyncError):
    """An impossible or contradictory setting."""


class DataError(HetsyncError):
    """A missing, unreadable or malformed dataset file."""


class ClusterError(HetsyncError):
    """Ray could not be reached, or an actor died or stalled past its timeout."""


class DivergedError(HetsyncError):
    """The training loss stopped being a finite number."""
