"""Serial tools for technicians and benches: the link check and the protocol bench."""

__all__: list[str] = []
