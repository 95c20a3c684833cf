"""Benchmarks that print figures: vision, purge, and the matcher over real gates."""

__all__: list[str] = []
