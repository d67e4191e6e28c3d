"""Log lines (stdout, CloudWatch), the one error line (stderr), and redaction of the password."""

from __future__ import annotations

import datetime as dt
import sys
import threading
from collections.abc import Iterable
from typing import IO, NoReturn
from urllib.parse import quote, quote_plus

PROG = "migrate-runner"
REDACTED = b"[redacted]"

_out_lock = threading.RLock()


def _timestamp() -> str:
    now = dt.datetime.now(dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def write(stream: IO[bytes], data: bytes) -> None:
    with _out_lock:
        try:
            stream.write(data)
            stream.flush()
        except (BrokenPipeError, ValueError):
            pass


def log(message: str) -> None:
    """One plain line on stdout (CloudWatch), prefixed with a UTC timestamp."""
    write(sys.stdout.buffer, f"{_timestamp()} {PROG}: {message}\n".encode(errors="replace"))


def die(code: int, message: str) -> NoReturn:
    """One line on stderr, then exit with ``code``."""
    text = " ".join(message.split()) or "error"
    write(sys.stderr.buffer, f"{_timestamp()} {PROG}: error: {text}\n".encode(errors="replace"))
    raise SystemExit(code)


def one_line(exc: BaseException) -> str:
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    return text or type(exc).__name__


def secret_forms(secret: str) -> list[bytes]:
    """Every spelling of ``secret`` a command may print: raw, and percent-encoded the ways URL
    libraries do it (every byte, or keeping "/", or "+" for spaces; upper- and lower-case hex)."""
    if not secret:
        return []
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}
    forms |= {_lower_hex(form) for form in forms if "%" in form}
    return sorted((form.encode() for form in forms), key=len, reverse=True)  # longest first


def _lower_hex(form: str) -> str:
    parts = form.split("%")
    return parts[0] + "".join("%" + part[:2].lower() + part[2:] for part in parts[1:])


class Redactor:
    """Replaces the secret's forms in the command's output before it is forwarded."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.forms = sorted({form for secret in secrets for form in secret_forms(secret)}, key=len, reverse=True)

    def __call__(self, line: bytes) -> bytes:
        for form in self.forms:
            if form in line:
                line = line.replace(form, REDACTED)
        return line
