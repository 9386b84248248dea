"""End to end: orders POSTed through the supervised stack, the fan-out ceiling, the publisher."""
