"""Vision: camera sources, the frame pump, face detection, quality and frame selection.

``camera`` and ``frame_pump`` deliver frames; ``detectors`` find faces (one module per
runtime); ``quality`` scores a face against the thresholds; ``selection`` picks the frame
to send within a capture window; ``models`` pins and verifies the model files.
"""

__all__: list[str] = []
