"""What ``corral serve`` accepts for each option value, decided before anything starts.

Each parser takes the text from the command line and returns the value, or raises
``argparse.ArgumentTypeError`` whose message names the value and what is allowed (argparse
prefixes the option's name). ``pem_problem`` and ``import_failure`` turn a bad TLS file or a
broken app module into one plain line. Pure functions: no I/O here.
"""

from __future__ import annotations

import argparse
import math
import traceback

MAX_PORT = 65535


def port(text: str) -> int:
    """A TCP port, 0 (any free port) to 65535."""
    value = _integer(text)
    if value is None or not 0 <= value <= MAX_PORT:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a port: allowed 0 to {MAX_PORT} (0 picks a free one)"
        )
    return value


def positive_count(text: str) -> int:
    """A whole number of 1 or more (connections, workers)."""
    value = _integer(text)
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed: a whole number >= 1")
    return value


def positive_seconds(text: str) -> float:
    """A finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not allowed: a number of seconds > 0 (like 0.5 or 30)"
        )
    return value


def _integer(text: str) -> int | None:
    try:
        return int(text, 10)
    except ValueError:
        return None


CERTIFICATE = "certificate"
PRIVATE_KEY = "private key"


def pem_problem(contents: bytes, kind: str) -> str | None:
    """Why ``contents`` cannot be a PEM file holding a ``kind`` (``CERTIFICATE`` or
    ``PRIVATE_KEY``), or None if it has the right PEM block (the SSL library checks the rest)."""
    marker = b"-----BEGIN CERTIFICATE-----" if kind == CERTIFICATE else b"PRIVATE KEY-----"
    if marker not in contents:
        return f"is not a valid {kind} (no PEM {kind} block in it)"
    return None


def import_failure(module: str, error: BaseException) -> str:
    """One line for an app module that failed to import: the error's first line and where
    (``file:line``) it happened, in the module's code rather than in importlib's."""
    if isinstance(error, ModuleNotFoundError) and _is_or_contains(error.name, module):
        return f"cannot import {module!r}: {error}"
    first_line = (str(error).splitlines() or [""])[0]
    if isinstance(error, SyntaxError):
        first_line = error.msg
        where = f"{error.filename}:{error.lineno}" if error.filename else None
    else:
        where = _where(error)
    described = f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__
    located = f" at {where}" if where else ""
    return f"cannot import {module!r}: {described}{located}"


def _is_or_contains(package: str | None, module: str) -> bool:
    """Whether ``package`` is ``module`` or one of its parents (the app module itself is
    missing, rather than something it imports)."""
    return package is not None and (module == package or module.startswith(f"{package}."))


def _where(error: BaseException) -> str | None:
    """``file:line`` of the innermost frame outside importlib's own code."""
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if not frame.filename.startswith("<frozen ")
    ]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else None
