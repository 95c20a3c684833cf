"""Vision: camera sources, the frame pump, face detection, quality and frame selection.

In the order a frame goes through: ``camera`` and ``frame_pump`` deliver frames;
``detectors`` find faces (one module per runtime, ``tracking`` to follow one, ``skin`` to
tell a face from a painted shape); ``quality`` scores a face against the thresholds,
through ``tone``'s curve when it is dark; ``selection`` picks the frame to send within a
capture window and reports each frame (``progress``, with ``feedback`` for the
traveller); ``exposure`` turns those reports into the camera's exposure compensation.
``models`` pins and verifies the model files.
"""

__all__: list[str] = []
