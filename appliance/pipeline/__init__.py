"""One traveller through every stage: capture, sealing, matching, purge, then the gate.

``traveller.TravellerPipeline`` is the only place that knows all stages; ``lane`` holds
the unattended gate's "is the lane clear?" rule.
"""

__all__: list[str] = []
