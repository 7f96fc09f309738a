"""Every error a `voiceid` command ends on, as one line on stderr: `error CODE: what is wrong; fix: what
to do`, exit status 2 (1 for an error nobody foresaw). `--debug` (or VOICEID_DEBUG=1) prints the
traceback as well.

A newcomer's first hour meets start-up and configuration errors: a missing or corrupt model file, a
bad VOICEID_ENCRYPTION_KEY, PostgreSQL without its shared secrets, a setting outside its allowed
values, a database that does not answer. Python would print 60-150 lines of traceback for each; the
line names the code an operator can look up, the setting or file at fault, and the next step.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from typing import Any, NoReturn

import typer
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from voiceid.config import Settings, get_settings
from voiceid.errors import ErrorCode, VoiceIdError

DEBUG_ENV = "VOICEID_DEBUG"
EXIT_KNOWN = 2  # an error with a code (as the commands have always exited on VoiceIdError)
EXIT_UNEXPECTED = 1

# What to do, by code, where the raising code knows no better (a `hint` detail takes precedence).
HINTS: dict[ErrorCode, str] = {
    ErrorCode.MODEL_FILE_MISSING: "run `voiceid models fetch`, or set VOICEID_MODEL_DIR to the folder that holds them",
    ErrorCode.MODEL_FILE_CORRUPT: (
        "the file is not the pinned release (a partial download or an edit): delete it and run "
        "`voiceid models fetch` again"
    ),
    ErrorCode.MODEL_VERSION_MISMATCH: "run `voiceid models fetch` for this release's model files",
    ErrorCode.DATABASE_UNAVAILABLE: (
        "start the database server, or correct VOICEID_DATABASE_URL (host, port, database name), and run again"
    ),
    ErrorCode.CONFIGURATION_ERROR: "correct the setting named (README, Configuration), then run again",
}
UNEXPECTED_HINT = f"run again with --debug (or {DEBUG_ENV}=1) for the traceback, and report it"

# Settings whose values may hold secrets: never echoed back.
_SECRET_WORDS = ("key", "secret", "password", "token", "url", "dsn")


class _DebugSwitch:
    """Set by the root command's --debug option; read when a command fails."""

    on = False


_debug = _DebugSwitch()


def set_debug(on: bool) -> None:
    _debug.on = on


def debug_enabled() -> bool:
    return _debug.on or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


@dataclass(frozen=True)
class Failure:
    code: str
    what: str
    fix: str | None = None
    exit_code: int = EXIT_KNOWN

    def line(self) -> str:
        # One line whatever the message holds (driver errors span several).
        text = " ".join(f"error {self.code}: {self.what}".split())
        return text if not self.fix else f"{text}; fix: {' '.join(self.fix.split())}"


def env_name(loc: tuple[Any, ...]) -> str:
    """The environment variable of a settings field (nested models joined by the env delimiter)."""
    prefix = str(Settings.model_config.get("env_prefix") or "")
    delimiter = str(Settings.model_config.get("env_nested_delimiter") or "__")
    parts = [str(part) for part in loc if isinstance(part, str)]
    return (prefix + delimiter.join(parts)).upper() if parts else "the settings"


def _shown_value(variable: str, value: object) -> str:
    if any(word in variable.lower() for word in _SECRET_WORDS) or not isinstance(value, str | int | float):
        return ""
    text = repr(value)
    return f"={text}" if len(text) <= 80 else ""


def settings_failure(exc: ValidationError) -> Failure:
    """Settings validation (pydantic's multi-line report) as one line: each variable at fault, the value
    given (unless it may be secret) and the values allowed."""
    problems, fixes = [], []
    for error in exc.errors():
        variable = env_name(tuple(error.get("loc", ())))
        value = _shown_value(variable, error.get("input"))
        expected = (error.get("ctx") or {}).get("expected")
        if expected:
            problems.append(f"{variable}{value} is not allowed: use one of {expected}")
            fixes.append(f"set {variable} to one of those values, or unset it for the default")
        else:
            message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
            problems.append(f"{variable}{value}: {message}")
            fixes.append(f"correct {variable} (README, Configuration)")
    return Failure(str(ErrorCode.CONFIGURATION_ERROR), "; ".join(problems), "; ".join(dict.fromkeys(fixes)))


def _database_url() -> str:
    try:
        url = get_settings().sqlalchemy_url
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # the settings themselves are broken: the driver's message says enough
        return "the database"


def describe(exc: BaseException) -> Failure:
    """What went wrong, as a code, a sentence and the next step."""
    if isinstance(exc, VoiceIdError):
        fix = exc.details.get("hint") or HINTS.get(exc.code)
        return Failure(str(exc.code), exc.message, str(fix) if fix else None)
    if isinstance(exc, ValidationError) and exc.title == Settings.__name__:
        return settings_failure(exc)
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
        cause = str(exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc).strip().splitlines()
        detail = cause[0] if cause else type(exc).__name__
        return Failure(
            str(ErrorCode.DATABASE_UNAVAILABLE),
            f"cannot use {_database_url()}: {detail}",
            HINTS[ErrorCode.DATABASE_UNAVAILABLE],
        )
    if isinstance(exc, OSError) and exc.filename is not None:
        return Failure(
            str(ErrorCode.CONFIGURATION_ERROR),
            f"{exc.strerror or type(exc).__name__}: {exc.filename}",
            "check that the path exists and this user may use it (VOICEID_DATA_DIR, VOICEID_MODEL_DIR)",
        )
    return Failure(str(ErrorCode.INTERNAL_ERROR), f"{type(exc).__name__}: {exc}", UNEXPECTED_HINT, EXIT_UNEXPECTED)


def exit_with(exc: BaseException) -> NoReturn:
    """Print `exc` as one line (after its traceback with --debug) and exit non-zero."""
    failure = describe(exc)
    if debug_enabled():
        traceback.print_exception(exc)
    typer.secho(failure.line(), err=True, fg=typer.colors.RED)
    raise SystemExit(failure.exit_code)


def fail(exc: VoiceIdError) -> NoReturn:
    """A command's refusal: the error's one line, exit status 2 (a `typer.Exit`, so that the tests'
    CliRunner sees the status as a command's own)."""
    failure = describe(exc)
    if debug_enabled():
        traceback.print_exception(exc)
    typer.secho(failure.line(), err=True, fg=typer.colors.RED)
    raise typer.Exit(failure.exit_code)
