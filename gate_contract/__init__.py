"""The contract both programs share, importing neither of them.

``wire`` (the generated ``gate.v1`` stubs and service names), ``verdicts`` (what a verdict
signature covers and how the appliance checks it), ``sealing`` (payload encryption),
``bcbp`` (the IATA boarding-pass parser), ``keys`` (key and certificate layout and
loaders), ``files`` (atomic owner-only writes), ``documents`` (JSON and TOML read from files
others write: too deep is a ``ValueError``), ``paths`` (the data directory), ``clock``,
``onnx`` (onnxruntime loaded with its telemetry off), ``image_noise`` (a face's noise
in grey levels, which the gate measures and the matcher smooths), ``command_line`` (the argument
parser both programs' CLIs build on: every option's default in ``--help``) and
``progress`` (progress bars of the long commands: on a terminal, never with ``--json``).
"""

__all__: list[str] = []
