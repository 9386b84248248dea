"""LocalStack init hook (run in LocalStack's process): keep health probes off its console.

Compose's emulator healthcheck asks /_localstack/init/ready every few seconds, and the app's
/readyz (its container healthcheck) makes two AWS calls just as often: each would be a
console line. This drops those lines, and only those: the probes' paths, and AWS calls
whose User-Agent carries the readiness marker the web's probe clients send
(pubsub_supervisor/clients.py READINESS_AGENT; a unit test keeps the two equal).
"""

import logging

#: The emulator's own status endpoints, which only probes ask.
PROBE_PATHS = ("/_localstack/health", "/_localstack/init")
#: In the User-Agent of the web's readiness calls.
READINESS_AGENT = "pubsub-readiness"


class QuietProbes(logging.Filter):
    """Drop request log lines of health probes; keep every other request."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a probe's request line."""
        try:
            return not self._is_probe(record)
        except Exception:
            # A log filter must never fail the request it logs.
            return True

    @staticmethod
    def _is_probe(record: logging.LogRecord) -> bool:
        headers = getattr(record, "request_headers", None) or {}
        agent = next((v for k, v in headers.items() if k.lower() == "user-agent"), "")
        if READINESS_AGENT in str(agent):
            return True
        if record.name.endswith(".http") and isinstance(record.args, tuple):
            return len(record.args) > 1 and str(record.args[1]).startswith(PROBE_PATHS)
        return False


def install() -> None:
    """Put the filter on LocalStack's request loggers (AWS calls and plain HTTP)."""
    for name in ("localstack.request.aws", "localstack.request.http"):
        logger = logging.getLogger(name)
        # By name: LocalStack may run the hook again, which defines the class anew.
        if not any(type(f).__name__ == "QuietProbes" for f in logger.filters):
            logger.addFilter(QuietProbes())


install()
