"""The web's operator routes as a client reaches them, for the unit and integration tiers."""

from __future__ import annotations

#: One request (method, path) for each operator route; test_web_access checks it covers
#: every endpoint in web/access.py's OPERATOR_ENDPOINTS.
OPERATOR_REQUESTS = [
    ("GET", "/orders"),
    ("GET", "/api/orders"),
    ("GET", "/api/analytics"),
    ("GET", "/api/pipeline"),
    ("GET", "/pipeline"),
    ("GET", "/dlq"),
    ("POST", "/dlq/redrive"),
    ("GET", "/metrics"),
]
