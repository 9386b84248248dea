"""gunicorn settings, from the project's settings (`gunicorn -c python:web.gunicorn_conf`)."""

from pubsub_supervisor import logs
from pubsub_supervisor.settings import Settings

_settings = Settings()

bind = f"{_settings.web_host}:{_settings.web_port}"
workers = _settings.web_workers
worker_class = "gthread"
threads = _settings.web_threads
# Requests are short; a worker stuck this long is restarted by the arbiter.
timeout = 30
# On SIGTERM, let requests in flight finish (fits inside supervisord's stopwaitsecs).
graceful_timeout = 10
# gunicorn's own lines are JSON like every other line; its access log stays off (the app
# logs each request as JSON, with its trace id).
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": _settings.log_level, "handlers": ["json"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
        "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
    },
    "handlers": {
        "json": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
        }
    },
    "formatters": {
        "json": {"()": "pubsub_supervisor.logs.JsonFormatter", "program": _settings.program_name}
    },
}
proc_name = "pubsub-web"
# gunicorn 27's control socket defaults to one path per user ($HOME/.gunicorn/gunicorn.ctl),
# which stacks running side by side would fight over; supervisord is the control plane.
control_socket_disable = True
# Refuse absurd headers before they reach Flask.
limit_request_line = 8190
limit_request_fields = 100


def post_fork(_server: object, _worker: object) -> None:
    """Each worker logs JSON under the program's name."""
    logs.configure(_settings.program_name, _settings.log_level)


#: The project's packages, imported by this file into gunicorn's master process, and
#: prometheus_client, whose default registry would otherwise still hold the metrics the old
#: modules registered (the new workers' import would register them again and fail).
_RELOADED_PACKAGES = ("web", "services", "pubsub_supervisor", "prometheus_client")


def on_reload(_server: object) -> None:
    """On HUP, forget the project's modules so the new workers import the code as saved."""
    import sys

    # Workers are forked from the master: without this they would reuse its imports of
    # web/ (this file imports the package) and run the old code (`make dev`'s reload).
    for name in list(sys.modules):
        if name.split(".", 1)[0] in _RELOADED_PACKAGES:
            del sys.modules[name]
