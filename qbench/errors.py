"""User-facing errors.

Every mistake a user can make (unknown method, bad bit-width, missing dataset root, a typo in a config key) raises a
:class:`QbenchError` whose message is one line that names the fix. The CLI prints that line and exits with status 2,
without a traceback; programming errors keep their traceback.
"""

__all__ = ["QbenchError", "ConfigError", "UnknownMethodError", "PluginError", "DataError", "BitsError"]


class QbenchError(Exception):
    """Base class of errors caused by user input; the message is a single actionable line."""


class ConfigError(QbenchError, KeyError):
    """A config key or value is invalid."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownMethodError(QbenchError, KeyError):
    """A method name is not registered; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PluginError(QbenchError):
    """A plugin file or entry point failed to load."""


class DataError(QbenchError):
    """A dataset root is missing or malformed; the message says which files are expected where."""


class BitsError(QbenchError, ValueError):
    """A bit-width spec such as 'W1A4' is malformed or unsupported by a quantizer."""
