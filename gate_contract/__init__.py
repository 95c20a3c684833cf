"""The contract both programs share, importing neither of them.

``wire`` (the generated ``gate.v1`` stubs and service names), ``verdicts`` (what a verdict
signature covers and how the appliance checks it), ``sealing`` (payload encryption),
``bcbp`` (the IATA boarding-pass parser), ``keys`` (key and certificate layout and
loaders), ``files`` (atomic owner-only writes), ``paths`` (the data directory), ``clock``,
``onnx`` (onnxruntime loaded with its telemetry off) and ``command_line`` (the argument
parser both programs' CLIs build on: every option's default in ``--help``).
"""

__all__: list[str] = []
