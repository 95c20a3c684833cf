"""The tools that need both sides on one machine: the demo, the simulation, the benches,
the supported test doubles and the emulated Pico (``emulated_pico``, a test rig for the
firmware deploy). The only package allowed to import both the appliance and the matching
service; neither of them imports it (commands plug in by entry points)."""

__all__: list[str] = []
