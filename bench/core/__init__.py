"""What every part of the benchmark shares: payloads, statistics, figures as text, the targets."""
