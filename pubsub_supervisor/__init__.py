"""The foundation every program runs on: settings, the service registry, the topology,
clients, stores, events, errors, logs, metrics, backoff, the program runner and the
consumer runtime (`runtime/`). It imports neither the web nor the services."""
