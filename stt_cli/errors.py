"""How ``stt`` fails: one line on stderr naming the cause (and the fix where known), exit 1 for
failures, 2 for usage errors, 130 on Ctrl-C; ``stt --debug`` (or ``STT_DEBUG=1``) shows the
traceback instead. Every subcommand inherits this from :class:`STTGroup`, so a new command needs
nothing of its own to fail politely.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from stt_proto import STTError
from stt_proto.peer_text import sanitize

FAILURE, USAGE, INTERRUPTED = 1, 2, 130


class CLIError(Exception):
    """A failure already phrased for the user (one line); ``code`` is the exit status."""

    def __init__(self, message: str, code: int = FAILURE) -> None:
        super().__init__(message)
        self.code = code


def describe(exc: BaseException) -> str:
    """One line saying what went wrong, for any exception ``stt`` lets through."""
    if isinstance(exc, CLIError):
        return str(exc)
    if isinstance(exc, OSError) and not isinstance(exc, STTError):
        return describe_os_error(exc)
    text = str(exc) or type(exc).__name__
    if isinstance(exc, STTError):
        return sanitize(text)  # may quote the peer
    return f"{type(exc).__name__}: {sanitize(text)}"


def describe_os_error(exc: OSError, what: str | None = None) -> str:
    """``cannot <what>: <reason>`` with a hint for the usual causes."""
    reason = exc.strerror or str(exc)
    target = what or (f"use {exc.filename}" if exc.filename else "do that")
    hint = ""
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = " (check the path's permissions or choose another)"
    elif exc.errno == errno.ENOSPC:
        hint = " (free some space or choose another place)"
    elif exc.errno == errno.ENOENT and target.startswith("write"):
        hint = " (create the directory first or choose another path)"
    return f"cannot {target}: {reason}{hint}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _debug_requested(args: Sequence[str]) -> bool:
    if os.environ.get("STT_DEBUG", "") not in ("", "0"):
        return True
    for arg in args:  # a group option: it comes before the command's name
        if arg == "--debug":
            return True
        if not arg.startswith("-"):
            return False
    return False


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"stt: {_one_line(message)}", err=True)
    sys.exit(code)


def _unwrap(exc: BaseException) -> BaseException:
    """The exception that matters in ``exc``: a task group's (trio, anyio) Ctrl-C, else its
    first failure."""
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    leaves = [_unwrap(inner) for inner in exc.exceptions]
    for leaf in leaves:
        if isinstance(leaf, KeyboardInterrupt | click.Abort):
            return leaf
    return leaves[0] if leaves else exc


def _exit_for(exc: BaseException, debug: bool) -> NoReturn:
    """Print ``exc`` in one line (a traceback with ``debug``) and exit with its status."""
    if isinstance(exc, click.exceptions.Exit):
        sys.exit(exc.exit_code)
    if isinstance(exc, click.Abort | KeyboardInterrupt):
        cause = exc.__cause__ or exc.__context__
        if isinstance(exc, click.Abort) and isinstance(cause, EOFError):
            _fail("no answer on standard input", FAILURE)
        if debug:
            traceback.print_exception(exc)
        _fail("interrupted", INTERRUPTED)
    if isinstance(exc, click.UsageError):
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        _fail(exc.format_message() + hint, USAGE)
    if isinstance(exc, click.ClickException):
        _fail(exc.format_message(), exc.exit_code or FAILURE)
    if debug:
        traceback.print_exception(exc)
        sys.exit(exc.code if isinstance(exc, CLIError) else FAILURE)
    if isinstance(exc, CLIError):
        _fail(str(exc), exc.code)
    if isinstance(exc, STTError | OSError | ValueError | RuntimeError | LookupError
                  | TimeoutError):
        _fail(describe(exc), FAILURE)
    # a bug: still one line, and how to see more
    _fail(f"internal error: {describe(exc)} (run `stt --debug ...` to see where, and please "
          "report it)", FAILURE)


class STTGroup(click.Group):
    """A click group that turns every failure into one line and an exit status."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        debug = _debug_requested(argv)
        try:
            result = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except SystemExit:
            raise
        except BaseException as exc:  # every failure gets its one line
            _exit_for(_unwrap(exc), debug)
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else 0)
