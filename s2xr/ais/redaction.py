"""Keeping an API key out of logs, files and error messages.

:class:`SecretRedactor` replaces a secret by ``***`` in text — also quoted, JSON-, URL- or
HTML-escaped, in any letter case. :func:`protect_logger` attaches a filter to a logger that
passes every record (message, arguments, traceback) through the redactors registered with
:func:`redact_in_logs` while they live (the capture and replay loggers are protected).
"""

from __future__ import annotations

import html
import logging
import re
import weakref


def _char_forms(c: str) -> str:
    """A regex matching one character of a secret in the forms a server, a URL or a log may
    put it in: itself, ``\\uXXXX`` (JSON, Go), ``%XX`` (URL, UTF-8 bytes), ``+`` (a space in
    a query), ``&#N;`` / ``&#xH;`` / ``&amp;`` (HTML) and backslash-escaped punctuation."""
    o = ord(c)
    forms = {re.escape(c), re.escape("".join(f"%{b:02x}" for b in c.encode())),
             f"&\\#0*{o};", f"&\\#x0*{o:x};"}
    if o < 0x10000:
        forms.add(re.escape(f"\\u{o:04x}"))
    else:  # a JSON surrogate pair
        v = o - 0x10000
        forms.add(re.escape(f"\\u{0xD800 + (v >> 10):04x}\\u{0xDC00 + (v & 0x3FF):04x}"))
    if html.escape(c) != c:
        forms.add(re.escape(html.escape(c)))
    if not c.isalnum():
        forms.add(re.escape("\\" + c))
    if c == " ":
        forms.add(re.escape("+"))
    return "(?:" + "|".join(sorted(forms)) + ")"


class SecretRedactor:
    """Replaces a secret (an API key) in text by ``***`` — also when it is quoted, JSON-escaped
    (``\\u0026``, ``\\/``), URL-encoded (``%2F``, ``+``) or HTML-escaped, in any letter case.
    ``redactor(text)`` returns the redacted text; :meth:`found` says whether the secret is in
    ``text``."""

    MASK = "***"

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("nothing to redact: empty secret")
        self._pattern = re.compile("".join(_char_forms(c) for c in secret), re.IGNORECASE)

    def __call__(self, text: object) -> str:
        return self._pattern.sub(self.MASK, str(text))

    def found(self, text: object) -> bool:
        """Whether the secret (in any of its forms) occurs in ``text``."""
        return self._pattern.search(str(text)) is not None


class _RedactSecrets(logging.Filter):
    """Redacts the API keys of live captures from log records (message, arguments and
    traceback) of the loggers it is attached to (see :func:`protect_logger`)."""

    def __init__(self) -> None:
        super().__init__()
        self.redactors: weakref.WeakSet[SecretRedactor] = weakref.WeakSet()

    def _redact(self, text: str) -> str:
        for r in list(self.redactors):
            text = r(text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.redactors:
            return True
        try:
            msg = record.getMessage()
        except Exception:  # a malformed record: keep only its template
            msg = str(record.msg)
        red = self._redact(msg)
        if red != msg or record.args:
            record.msg, record.args = red, None
        if record.exc_info and record.exc_info[1] is not None:
            tb = logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, self._redact(tb)
        elif record.exc_text:
            record.exc_text = self._redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self._redact(record.stack_info)
        return True


_SECRETS = _RedactSecrets()


def protect_logger(logger: logging.Logger) -> logging.Logger:
    """Attach the secret filter to ``logger`` (records of its own, not of its children)."""
    if _SECRETS not in logger.filters:
        logger.addFilter(_SECRETS)
    return logger


def redact_in_logs(redactor: SecretRedactor) -> None:
    """Redact ``redactor``'s secret from the records of every protected logger for as long as
    ``redactor`` lives."""
    _SECRETS.redactors.add(redactor)
