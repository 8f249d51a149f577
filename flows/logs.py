"""Log output of every command: plain text for people, or one JSON object per line.

``--log-format json`` (or ``logging.format = "json"``) writes each record as one JSON
object with ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``run_id`` (one per
process, to tell interleaved runs apart), ``tenant`` (``null`` unless the record is
about one tenant: ``extra={"tenant": ...}``), ``message`` and any structured fields
the record carries (the heartbeat's rates and counts); a traceback is ``exc_info``, one
string. Text keeps the lines people
and the tests know: a command's own lines (:func:`say`) as they are, other records as
``time logger: message``.

No record reaches the output with a secret or a contact address in it: the chain
ends with :class:`PiiFilter` (e-mail addresses) and, once the settings are known,
the settings' :class:`~schemas.secrets.Scrubber` (:func:`add_scrubber`), both applied
to the message and to any traceback.

>>> import io, json
>>> out = io.StringIO()
>>> _ = configure("json", stream=out, run_id="r-1")
>>> add_scrubber(Scrubber({"hunter2-secret"}))
>>> logging.getLogger("esg_leads.demo").warning("login hunter2-secret for ann@example.com",
...                                             extra={"tenant": "acme-capital"})
>>> record = json.loads(out.getvalue())
>>> {k: record[k] for k in ("level", "logger", "run_id", "tenant", "message")}
{'level': 'WARNING', 'logger': 'esg_leads.demo', 'run_id': 'r-1', 'tenant': 'acme-capital', 'message': 'login *** for ***@***'}
>>> out = io.StringIO()
>>> _ = configure("text", stream=out)
>>> say(logging.getLogger("esg_leads.run"), "esg-leads run: ", "started")
>>> out.getvalue()
'esg-leads run: started\\n'
>>> reset()
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from datetime import UTC, datetime
from typing import IO, Any

from esg_leads.schemas.secrets import Scrubber

FORMATS = ("text", "json")
#: One id per process: every record of this run carries it.
RUN_ID = uuid.uuid4().hex[:12]
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
#: Set on the handler this module installs, so configuring again replaces it.
_MARK = "_esg_leads_handler"


class PiiFilter(logging.Filter):
    """Masks e-mail addresses in a record's message and traceback (contact details must
    never reach a log; investor ids are pseudonymous and stay)."""

    def __init__(self) -> None:
        super().__init__()

    @staticmethod
    def mask(text: str) -> str:
        return _EMAIL.sub("***@***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self.mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        _freeze_traceback(record, self.mask)
        return True


def _freeze_traceback(record: logging.LogRecord, clean: Any) -> None:
    """Render the traceback once into ``exc_text``, cleaned, and drop ``exc_info`` so
    that no formatter renders it again from the live exception (unscrubbed)."""
    if record.exc_info and record.exc_info[0] is not None:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_info = None
    if record.exc_text:
        record.exc_text = clean(record.exc_text)


class _Context(logging.Filter):
    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = self.run_id
        if not hasattr(record, "tenant"):
            record.tenant = None
        return True


class _Text(logging.Formatter):
    """A command's own lines as they are; library records with time and logger."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = getattr(record, "console_prefix", None)
        if prefix is None:
            return super().format(record)
        return prefix + record.getMessage()


def _json_formatter() -> logging.Formatter:
    from pythonjsonlogger.core import RESERVED_ATTRS
    from pythonjsonlogger.json import JsonFormatter

    class Json(JsonFormatter):
        def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
            moment = datetime.fromtimestamp(record.created, UTC)
            return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    return Json("{asctime}{levelname}{name}{run_id}{tenant}{message}", style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                reserved_attrs=[*RESERVED_ATTRS, "console_prefix", "run_id", "tenant"])


def configure(fmt: str = "text", stream: IO[str] | None = None,
              run_id: str = RUN_ID) -> logging.Handler:
    """Install the one log handler (replacing a previous one) writing to ``stream``."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}, not {fmt!r}")
    root = logging.getLogger()
    reset()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    setattr(handler, _MARK, True)
    handler.setFormatter(_json_formatter() if fmt == "json" else _Text())
    handler.addFilter(_Context(run_id))
    handler.addFilter(PiiFilter())
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)  # libraries' INFO chatter stays out
    return handler


def _ours() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if getattr(h, _MARK, False)]


def reset() -> None:
    """Remove the handler :func:`configure` installed (tests, doctests)."""
    for handler in _ours():
        logging.getLogger().removeHandler(handler)


def add_scrubber(scrubber: Scrubber) -> None:
    """Scrub the settings' secrets out of every record this module's handler writes."""
    for handler in _ours():
        handler.addFilter(scrubber)
        handler.addFilter(_TracebackScrubber(scrubber))


class _TracebackScrubber(logging.Filter):
    def __init__(self, scrubber: Scrubber) -> None:
        super().__init__()
        self.scrubber = scrubber

    def filter(self, record: logging.LogRecord) -> bool:
        _freeze_traceback(record, self.scrubber)
        return True


def say(log: logging.Logger, prefix: str, message: str, level: int = logging.INFO,
        **fields: Any) -> None:
    """A command's own line: ``prefix + message`` in text (as printed before), the
    message with ``fields`` as a JSON object in json. Shown whatever the loggers' levels
    (the root stays at WARNING for libraries), as the ``print`` it replaces was."""
    if not _ours():  # called without a configured handler (a library use, a test)
        print(prefix + message, file=sys.stderr, flush=True)
        return
    record = log.makeRecord(log.name, level, "(say)", 0, "%s", (message,), None,
                            extra={"console_prefix": prefix, **fields})
    log.handle(record)  # handle, not log: no level check
