"""Consumer drain benchmark: how fast SQS consumers empty a pre-filled queue."""
