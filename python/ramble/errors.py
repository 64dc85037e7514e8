"""Errors a user can act on.

Every exception meant for a user derives from :class:`RambleError`; the CLI
prints its message on one line and exits non-zero (tracebacks only with
``--debug``).  Anything else escaping is a bug.
"""


class RambleError(Exception):
    """A problem the user can fix: bad input, missing data, missing Julia."""


class ConfigError(RambleError, ValueError):
    """A configuration value is out of its valid range."""


class FormatError(RambleError):
    """A file is not a readable ramble HDF5 file of a supported version."""


class JuliaError(RambleError):
    """Julia raised an exception, or could not be started; carries Julia's message."""


class DataError(RambleError):
    """A data set is missing or corrupt."""


class Interrupted(RambleError):
    """A run stopped by SIGTERM or SIGINT after committing its state (continue it with ``ramble resume``)."""
