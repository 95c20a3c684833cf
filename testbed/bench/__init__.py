"""Benchmarks that print figures: vision, purge, and the matcher over real gates."""
