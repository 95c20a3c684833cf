"""Add the TFLite metadata MediaPipe Tasks needs to load the BlazeFace models from npm.

The npm files carry no metadata, and Tasks' FaceDetector refuses them without
``NormalizationOptions``. We build a ``ModelMetadata`` flatbuffer (identifier ``M001``)
describing one RGB input normalised with mean 127.5 / std 127.5 and the two outputs,
append it as a buffer referenced by a ``TFLITE_METADATA`` entry, and re-pack the model
(identifier ``TFL3``). The schemas are the ones mediapipe ships.
"""

from __future__ import annotations

import flatbuffers
from mediapipe.tasks.metadata import metadata_schema_py_generated as meta
from mediapipe.tasks.metadata import schema_py_generated as schema


def _metadata_bytes() -> bytes:
    normalization = meta.ProcessUnitT()
    normalization.optionsType = meta.ProcessUnitOptions.NormalizationOptions
    normalization.options = meta.NormalizationOptionsT()
    normalization.options.mean = [127.5]
    normalization.options.std = [127.5]

    image = meta.TensorMetadataT()
    image.name = "image"
    image.content = meta.ContentT()
    image.content.contentPropertiesType = meta.ContentProperties.ImageProperties
    image.content.contentProperties = meta.ImagePropertiesT()
    image.content.contentProperties.colorSpace = meta.ColorSpaceType.RGB
    image.processUnits = [normalization]

    outputs = []
    for name in ("regressors", "classificators"):
        tensor = meta.TensorMetadataT()
        tensor.name = name
        outputs.append(tensor)

    subgraph = meta.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [image]
    subgraph.outputTensorMetadata = outputs

    model = meta.ModelMetadataT()
    model.name = "BlazeFace"
    model.description = "MediaPipe BlazeFace face detector (npm @mediapipe/face_detection)"
    model.subgraphMetadata = [subgraph]

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"M001")
    return bytes(builder.Output())


def with_tasks_metadata(tflite: bytes) -> bytes:
    """Return ``tflite`` with a ``TFLITE_METADATA`` entry MediaPipe Tasks accepts."""
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(tflite, 0))
    buffer = schema.BufferT()
    buffer.data = list(_metadata_bytes())
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = "TFLITE_METADATA"
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != b"TFLITE_METADATA"]
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(tflite) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
