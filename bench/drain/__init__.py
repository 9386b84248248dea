"""Consumer drain: how fast SQS consumers, the runtime and its contenders, empty a full queue."""
