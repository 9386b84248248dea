"""pubsub_supervisor."""
