"""Security of the pages: CSRF on HTML forms, the secret that signs it, response headers."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from flask import Flask, Response
from flask_wtf.csrf import CSRFProtect

from pubsub_supervisor.settings import Settings

csrf = CSRFProtect()

#: Scripts and styles come from /static only: no inline code, no other origin.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # For browsers that predate frame-ancestors.
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}

KEY_FILENAME = "web-secret-key"


def secret_key(settings: Settings) -> str:
    """WEB_SECRET_KEY, or the key kept in DATA_DIR (created once, atomically)."""
    if settings.web_secret_key is not None:
        return settings.web_secret_key.get_secret_value()
    path = Path(settings.data_dir) / KEY_FILENAME
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Several gunicorn workers may start at once: write aside, then link into place;
        # the first link wins and every worker reads the same key.
        fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=".secret-")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
            with contextlib.suppress(FileExistsError):
                os.link(scratch, path)
        finally:
            os.unlink(scratch)
    return path.read_text().strip()


def init_app(app: Flask, settings: Settings) -> None:
    """CSRF on every form POST, signed sessions, and the headers on every response."""
    app.config.update(
        SECRET_KEY=secret_key(settings),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # A form may sit open while an operator watches the pipeline.
        WTF_CSRF_TIME_LIMIT=8 * 3600,
    )
    csrf.init_app(app)

    @app.after_request
    def _headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response
