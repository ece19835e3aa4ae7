"""The one exception type the CLI turns into a one-line error (never a traceback)."""


class IpviError(Exception):
    """A problem the user can fix: bad input, bad configuration, a missing prerequisite.

    The message must name the problem (the file, key, column or field) and must never contain
    personal identifiers such as names, dates of birth or addresses.
    """


class ConfigError(IpviError):
    """The YAML configuration is invalid; the message names the key."""
