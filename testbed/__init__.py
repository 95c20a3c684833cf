"""The tools that need both sides on one machine: the demo, the simulation, the benches and
the supported test doubles. The only package allowed to import both the appliance and
the matching service; neither of them imports it (commands plug in by entry points)."""

__all__: list[str] = []

__all__: list[str] = []

__all__: list[str] = []

__all__: list[str] = []

__all__: list[str] = []

__all__: list[str] = []
