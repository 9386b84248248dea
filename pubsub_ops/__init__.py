"""The operator's tools: the `pubsub` command, the offline topology lint and the IAM policy.

They run against the foundation (`pubsub_supervisor`) and never inside a program's hot path.
"""
