"""Result codes of the C library and the exceptions they become."""

from __future__ import annotations

import errno as _errno
import os
import re
from enum import IntEnum
from typing import Dict, Optional, Type


class Result(IntEnum):
    """`mpsup_result`, number for number."""

    OK = 0
    ERR_INVALID_HANDLE = 1
    ERR_INVALID_ARGUMENT = 2
    ERR_INVALID_CONFIG = 3
    ERR_UNKNOWN_GROUP = 4
    ERR_SPAWN = 5
    ERR_TIMEOUT = 6
    ERR_OS = 7
    ERR_PANIC = 8
    ERR_NOT_READY = 9
    ERR_UNSUPPORTED = 10


class MpsupError(Exception):
    """Mixed into every exception raised for a failed library call.

    Each concrete class also derives from the builtin exception that API.md names
    (``TimeoutError``, ``ValueError``, ``KeyError``, ``OSError``, ``RuntimeError``), so
    callers can catch either. ``result`` is the raw ``mpsup_result`` number and
    ``message`` the library's ``mpsup_last_error_message()`` text.
    """

    result: int = -1
    message: str = ""


class InvalidHandleError(MpsupError, RuntimeError):
    """A closed, freed or made-up supervisor handle."""


class InvalidArgumentError(MpsupError, ValueError):
    pass


class InvalidConfigError(MpsupError, ValueError):
    pass


class UnknownGroupError(MpsupError, KeyError):
    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class SpawnError(MpsupError, OSError):
    pass


class SupervisorTimeoutError(MpsupError, TimeoutError):
    pass


class SupervisorOSError(MpsupError, OSError):
    pass


class PanicError(MpsupError, RuntimeError):
    pass


class NotReadyError(MpsupError, RuntimeError):
    pass


class UnsupportedError(MpsupError, OSError):
    """What a group asks cannot be had here (privilege, cgroup controller)."""


class UnknownResultError(MpsupError, RuntimeError):
    pass


_CLASSES: Dict[int, Type[MpsupError]] = {
    Result.ERR_INVALID_HANDLE: InvalidHandleError,
    Result.ERR_INVALID_ARGUMENT: InvalidArgumentError,
    Result.ERR_INVALID_CONFIG: InvalidConfigError,
    Result.ERR_UNKNOWN_GROUP: UnknownGroupError,
    Result.ERR_SPAWN: SpawnError,
    Result.ERR_TIMEOUT: SupervisorTimeoutError,
    Result.ERR_OS: SupervisorOSError,
    Result.ERR_PANIC: PanicError,
    Result.ERR_NOT_READY: NotReadyError,
    Result.ERR_UNSUPPORTED: UnsupportedError,
}

# Rust's io::Error renders as "<strerror text> (os error N)".
_OS_ERROR_RE = re.compile(r"\(os error (\d+)\)")
_ERRNO_RE = re.compile(r"\berrno[ =:]*(\d+)\b", re.IGNORECASE)


def errno_from_message(message: str) -> Optional[int]:
    """The errno a library message names, or None.

    Tries ``(os error N)`` (Rust's ``io::Error``), then ``errno N``, then a known
    ``strerror`` text; the last one found wins for the first two forms since the
    library puts the cause at the end of its messages.
    """
    for pattern in (_OS_ERROR_RE, _ERRNO_RE):
        found = pattern.findall(message)
        if found:
            return int(found[-1])
    best: Optional[int] = None
    best_len = 0
    for code in _errno.errorcode:
        text = os.strerror(code)
        if text and not text.startswith("Unknown error") and text in message and len(text) > best_len:
            best, best_len = code, len(text)
    return best


def error_for(result: int, message: str) -> MpsupError:
    """The exception for a failed call; ``message`` is the library's text."""
    cls = _CLASSES.get(result, UnknownResultError)
    err: MpsupError
    if cls in (SpawnError, SupervisorOSError):  # OSError with errno (TimeoutError has none)
        code = errno_from_message(message)
        err = cls(code, message) if code is not None else cls(message)
    else:
        err = cls(message)
    err.result = int(result)
    err.message = message
    return err
