"""Argument parsing for ``esg-leads``: value types, help layout, one-line parse errors.

Bad flag values are refused while parsing, with the flag's name, in one line (not
argparse's usage block followed by the error):

>>> import contextlib, io
>>> p = Parser(prog="esg-leads demo")
>>> _ = p.add_argument("--workers", type=positive_int, help="threads")
>>> err = io.StringIO()
>>> with contextlib.redirect_stderr(err), contextlib.suppress(SystemExit):
...     p.parse_args(["--workers", "0"])
>>> print(err.getvalue(), end="")
esg-leads demo: error: argument --workers: must be at least 1, got 0 (see esg-leads demo --help)
"""

from __future__ import annotations

import argparse
import errno
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

#: A user mistake: bad arguments, invalid settings, an output already there.
EXIT_USAGE = 2
#: A failure outside the user's control (unreachable broker after the retry budget).
EXIT_FAILURE = 1
#: An unexpected exception: a bug (``EX_SOFTWARE`` of sysexits.h).
EXIT_BUG = 70
#: A closed stdout (``| head``): what a process killed by SIGPIPE reports to the shell.
EXIT_PIPE = 128 + 13


class UsageError(Exception):
    """A user mistake (bad flag value, invalid config), or an output that cannot be
    written (full disk, read-only directory): one clear line, exit code 2."""


class Failure(Exception):
    """The command could not do its job for a reason outside the user's input (the
    broker stayed unreachable for the whole retry budget): one line, exit code 1."""


def open_recording(path: Path):
    """A :class:`RecordingReader` over ``path``, or one line saying why it is not one.

    A recording is a directory of ``segment-*.parquet`` files with the recording schema,
    and a ``manifest.json`` once complete; an empty directory, a run's output directory
    or a folder of other Parquet files is not one (and would otherwise replay as
    "0 messages", successfully).
    """
    from esg_leads.connectors.recording import MANIFEST_NAME, RecordingReader

    if not path.exists():
        raise UsageError(f"no recording at {path} (make one with esg-leads generate or record)")
    if not path.is_dir():
        raise UsageError(f"{path} is a file, not a recording (a directory)")
    try:
        reader = RecordingReader(path)
    except (ValueError, OSError) as error:  # wrong schema, corrupt or unreadable segment
        raise UsageError(f"{path} is not a readable recording: {error}") from None
    if reader.segment_count == 0 and not (path / MANIFEST_NAME).exists():
        raise UsageError(f"{path} is not a recording (no segment-*.parquet, no {MANIFEST_NAME}); "
                         "make one with esg-leads generate or record")
    return reader


def check_run_outputs(path: Path) -> None:
    """Refuse a directory that holds no run's outputs (``replay --out``, or a recording of
    the output topics): compared or searched, it would look like a run with no leads."""
    from esg_leads.replay.diff import KINDS

    if not path.is_dir():
        raise UsageError(f"no run outputs at {path}")
    if not (any((path / name).exists() for name, _ in KINDS.values())
            or any(path.glob("segment-*.parquet"))):
        raise UsageError(f"{path} holds no run outputs (no {', '.join(n for n, _ in KINDS.values())}"
                         ", no recording of the output topics)")


def check_out(path: Path, overwrite: bool) -> None:
    """Refuse, before any work, to write a recording where something already is."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {path} is a file, not a directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise UsageError(f"--out {path} already exists and is not empty; "
                         "add --overwrite to replace the recording in it")


class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Examples (the epilog) keep their line breaks; a flag with a default shows it
    (``None`` and ``False`` say nothing a reader needs: the help text says what unset means)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, and whose sub-parsers (created
    by ``sub.add_parser``, which reuses this class) share the layout."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = _integer(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


#: ``--workers``, ``--investors`` ...: 1 or more.
positive_int = _int_at_least(1)
#: ``--seed`` and the like: 0 or more.
nonneg_int = _int_at_least(0)


def port(text: str) -> int:
    """A TCP port; 0 asks the system for any free one.

    >>> port("0"), port("9464")
    (0, 9464)
    >>> port("70000")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: not a TCP port (0-65535): 70000
    """
    value = _integer(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port (0-65535): {value}")
    return value


def positive_float(text: str) -> float:
    """A number above 0 (``nan`` and ``inf`` are not)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


#: Operating-system errors that come from what the user asked for (a port in use or
#: not allowed, a path that is missing, read-only or full), not from a bug.
USER_ERRNOS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES, errno.EPERM,
                         errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENOSPC, errno.EROFS})


def lead_name(text: str) -> tuple[str | None, str]:
    """``explain``'s lead: ``(tenant, investor_id)`` of ``<tenant>/<investor_id>``, or
    ``(None, text)`` of an investor id alone (the tenant from ``--tenant`` or the outputs).

    >>> lead_name("acme-capital/inv-1"), lead_name("inv-1")
    (('acme-capital', 'inv-1'), (None, 'inv-1'))
    """
    from esg_leads.schemas.keys import KEY_FORMAT, parse_output_key

    if "/" not in text:
        return None, text
    try:
        return parse_output_key(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text[:200]!r} is neither {KEY_FORMAT} nor an investor id") from None


def tenant_id(text: str) -> str:
    """A ``--tenant`` value: a tenant id (a typo of a valid id is "no lead", not this)."""
    from esg_leads.schemas.common import TENANT_ID_PATTERN

    if re.fullmatch(TENANT_ID_PATTERN, text) is None:
        raise argparse.ArgumentTypeError(f"{text[:200]!r} is not a tenant id")
    return text


def describe_os_error(error: OSError) -> str:
    """One line for an :data:`USER_ERRNOS` error, with a hint for a busy address.

    >>> describe_os_error(OSError(errno.EADDRINUSE, "Address already in use"))
    'Address already in use: is another process listening there? Choose another port (--port, --metrics-port)'
    >>> describe_os_error(PermissionError(errno.EACCES, "Permission denied", "/srv/x"))
    'Permission denied: /srv/x'
    """
    text = error.strerror or str(error)
    if error.filename:
        text += f": {error.filename}"
    if error.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
        text += (": is another process listening there? Choose another port "
                 "(--port, --metrics-port)")
    return text


def package_version() -> str:
    """The installed distribution's version (its metadata, never a copy in the code)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("esg-leads")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def print_error(prog: str, message: str) -> None:
    """``prog: error: message`` on stderr, on one line whatever ``message`` holds."""
    flat = " ".join(str(message).split())
    print(f"{prog}: error: {flat}", file=sys.stderr, flush=True)


#: Settings given as flags to every command (``--log-format``), set by :func:`main`.
COMMON_OVERRIDES: dict = {}


def effective_settings(config: Path | None, overrides: dict | None = None):
    """The effective settings; from here on, logs take their format and lose every
    secret of them."""
    from esg_leads.flows import logs
    from esg_leads.flows.config import ConfigError, load_settings, scrubber

    try:
        settings = load_settings(config_file=config,
                                 overrides={**(overrides or {}), **COMMON_OVERRIDES})
    except ConfigError as error:
        raise UsageError(str(error)) from None
    logs.configure(settings.logging.format)
    logs.add_scrubber(scrubber(settings))
    return settings
