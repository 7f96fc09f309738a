"""The `voiceid` command line: one thin module per command group, on the services' `AppContext` (no
model) or `VoiceIdService` (model loaded).

- `models`: model files (cli/models.py);
- `eval`, `calibrate`, `eval-pad`, `eval-challenge`, `calibrate-pad`: figures from `voiceid.evaluation`
  (cli/evaluation.py);
- `serve`, `worker`, `purge`, `db`, `index`, `cohort`: the service and its upkeep (cli/serving.py);
- `keys`, `audit`: API keys, the master key, the audit trail (cli/keys.py);
- `speakers`: enrol and verify from files (cli/speakers.py);
- `telephony`, `ivr`: phone-line servers and the call simulator (cli/telephony.py).

Imports inside command functions are there only to keep torch (and the model code behind it) out of
the commands that do not need it: `voiceid keys list` or `voiceid db upgrade` start in a fraction of
the seconds torch takes to load.

Run as a program (`voiceid`, `python -m voiceid.cli`), every error a command ends on is one line on
stderr: code, what is wrong, what to do (cli/failures.py); `--debug` or VOICEID_DEBUG=1 adds the
traceback.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from voiceid.cli import evaluation, serving
from voiceid.cli.failures import DEBUG_ENV, exit_with, set_debug
from voiceid.cli.keys import audit_app, keys_app
from voiceid.cli.models import models_app
from voiceid.cli.speakers import speakers_app
from voiceid.cli.telephony import ivr_app, simulation_error, telephony_app

__all__ = ["app", "main", "simulation_error"]


class VoiceIdApp(typer.Typer):
    """The root command. Called as a program, an exception a command ends on is printed as one line
    (or its traceback with --debug) instead of Python's traceback; Typer's test runner calls the
    command itself and sees the exception as before."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            exit_with(exc)


app = VoiceIdApp(
    help="voiceid: open-source Voice ID for telephone IVRs.",
    no_args_is_help=True,
    # Tracebacks with local variables could print secrets (keys, URLs with passwords).
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", envvar=DEBUG_ENV, help="Print the traceback of an error, not only its line")
    ] = False,
) -> None:
    set_debug(debug)


# Groups and commands in the order `voiceid --help` lists them.
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
app.add_typer(speakers_app, name="speakers")
app.add_typer(telephony_app, name="telephony")
app.add_typer(ivr_app, name="ivr")
app.add_typer(serving.db_app, name="db")
app.add_typer(audit_app, name="audit")
app.add_typer(serving.index_app, name="index")
app.command("eval")(evaluation.eval_command)
app.command("calibrate")(evaluation.calibrate_command)
app.command("eval-pad")(evaluation.eval_pad_command)
app.command("eval-challenge")(evaluation.eval_challenge_command)
app.command("calibrate-pad")(evaluation.calibrate_pad_command)
app.add_typer(serving.cohort_app, name="cohort")
app.command("serve")(serving.serve)
app.command("worker")(serving.worker)
app.command("purge")(serving.purge)


def main() -> None:
    """The `voiceid` console entry point."""
    app()
