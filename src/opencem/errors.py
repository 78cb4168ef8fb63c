"""Errors a user can act on. Every face (the CLI now, the API and console later) catches
:class:`OpencemError` once and prints its message as one sentence, without a traceback;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class OpencemError(Exception):
    """A problem the user can fix (bad input, a missing file or dependency), in one sentence."""

    exit_code = 2  # what the command line exits with


class ConfigError(OpencemError, ValueError):
    """An option or setting out of range, naming the option."""


class MissingDependency(OpencemError, ImportError):
    """An optional part of opencem whose packages are not installed."""

    def __init__(self, what: str, extra: str, module: str):
        self.extra, self.module = extra, module
        super().__init__(f"{what} needs the optional package {module}, which is not installed; "
                         f"install it with: pip install 'opencem[{extra}]'")


class FolderInUse(OpencemError):
    """A folder a command would replace holds something it did not write."""


def suggest(name: str, candidates, quote: bool = False) -> str:
    """' (did you mean x?)' for a close match among ``candidates``, else ''."""
    import difflib

    options = list(candidates)
    match = difflib.get_close_matches(name, options, n=1, cutoff=0.6) or \
        [c for c in options if c.lower() == name.lower()]
    if not match:
        return ""
    return f" (did you mean {match[0]!r}?)" if quote else f" (did you mean {match[0]}?)"
