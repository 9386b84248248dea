"""Security of the pages: CSRF on HTML forms, the secret that signs it, response headers."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from flask import Flask, Response, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from pubsub_supervisor import files
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

#: Browsers that saw the site over HTTPS keep to HTTPS for a year.
HSTS = "max-age=31536000; includeSubDomains"
#: Endpoints whose answers may be cached: the same for everyone, no personal data.
CACHEABLE_ENDPOINTS = frozenset({"static", "api.products", "health.healthz"})

KEY_FILENAME = "web-secret-key"


class SessionInterface(SecureCookieSessionInterface):
    """The session cookie is `Secure` whenever the request came over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        """Secure on HTTPS (as the client saw it, after ProxyFix), or when configured."""
        return request.is_secure or super().get_cookie_secure(app)


def secret_key(settings: Settings) -> str:
    """WEB_SECRET_KEY, or the key kept in DATA_DIR (created once, atomically)."""
    if settings.web_secret_key is not None:
        return settings.web_secret_key.get_secret_value()
    path = Path(settings.data_dir) / KEY_FILENAME
    if not path.exists():
        files.private_dir(path.parent)
        # Several gunicorn workers may start at once: write aside, then link into place;
        # the first link wins and every worker reads the same key. mkstemp makes the
        # scratch file 0600, and the link is the same file.
        fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=".secret-")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
            with contextlib.suppress(FileExistsError):
                os.link(scratch, path)
        finally:
            os.unlink(scratch)
    # A key file from elsewhere (copied in, an older release) is tightened too.
    files.private_file(path)
    return path.read_text().strip()


def init_app(app: Flask, settings: Settings) -> None:
    """CSRF on every form POST, signed sessions, trusted proxies, and the headers on every
    response."""
    if settings.trusted_proxies:
        # Only as many X-Forwarded-* hops as there are proxies are believed: a client's own
        # X-Forwarded-For cannot pick the address the rate limit counts.
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)  # type: ignore[method-assign]
    app.session_interface = SessionInterface()
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
        if request.is_secure:
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        if request.endpoint not in CACHEABLE_ENDPOINTS:
            # Orders carry customers' addresses, pages carry CSRF tokens: no cache keeps them.
            response.headers["Cache-Control"] = "no-store"
        return response
