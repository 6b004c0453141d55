"""The exported formats: how each is written from a run's Keras model and read by its own runtime.

Every format has one input contract: a float32 batch of RGB pixels in [0, 255], NHWC, at the run's
image size; the output is the class probabilities in `labels.txt` order. The Keras model already
holds the run's preprocessing (`flower_core.models.classifier.Preprocess`), so tracing it into a TensorFlow
graph bakes that in, and the graph needs no `flower_core` class to load: the SavedModel is read
with `tf.saved_model.load`, the TFLite files with LiteRT's interpreter and the ONNX file with
ONNX Runtime.

The SavedModel has a second signature, `BYTES_SIGNATURE`, that takes encoded JPEG/PNG/GIF/BMP
bytes and decodes and resizes them in the graph as `flower_core.data.images.model_input` does with
Pillow (`decode_photo`), so a client can post a photo to TensorFlow Serving.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flower_core.errors import FlowerError

INPUT_NAME = "pixels"
OUTPUT_NAME = "probabilities"
BYTES_INPUT_NAME = "image_bytes"
SERVING_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "serving_bytes"
ONNX_OPSET = 17

Runner = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ExportFormat:
    """One format: its file (or folder) in the export and the precision of its weights, which
    sets how closely it must match the Keras model (`FLOAT_TOLERANCE` for float32,
    `QUANTISED_MIN_AGREEMENT` for float16 and int8)."""

    name: str
    path: str
    precision: str
    runtime: str
    description: str


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat(
            "saved_model",
            "saved_model",
            "float32",
            "TensorFlow (tf.saved_model.load), TensorFlow Serving",
            "TensorFlow SavedModel, float32; signatures "
            f"`{SERVING_SIGNATURE}` (pixels) and `{BYTES_SIGNATURE}` (encoded photos)",
        ),
        ExportFormat(
            "tflite",
            "model.tflite",
            "float16",
            "LiteRT (ai_edge_litert)",
            "TensorFlow Lite, float16 weights, float32 arithmetic",
        ),
        ExportFormat(
            "tflite_int8",
            "model_int8.tflite",
            "int8",
            "LiteRT (ai_edge_litert)",
            "TensorFlow Lite, int8 weights and activations (float32 input and output); "
            "the backbone's `int8_float_layers` stay float32",
        ),
        ExportFormat(
            "onnx",
            "model.onnx",
            "float32",
            "ONNX Runtime (onnxruntime)",
            f"ONNX, opset {ONNX_OPSET}, float32",
        ),
    )
}
# Written when no formats are asked for, and by the app's Export button.
DEFAULT_FORMATS = tuple(FORMATS)
# Float32 formats compute what Keras computes: the same class on every test photo and each
# probability within this of Keras'. Float16 weights cannot meet it: on 96 px ImageNet MobileNets,
# Keras itself with its weights rounded to float16 moved probabilities by up to 0.013, and float16
# TFLite files by 0.022 and 0.054 (docs/RESULTS.md). So float16, like int8, is a quantised format.
FLOAT_TOLERANCE = 1e-3
# Quantised formats (float16 weights, int8) must pick the Keras model's class on at least this
# share of the test photos; a near-tie may flip.
QUANTISED_MIN_AGREEMENT = 0.97


def parse_formats(formats: str | Iterable[str] | None) -> list[str]:
    """Format names from a comma-separated string or a list, checked, in `FORMATS` order.

    Raises:
        FlowerError: an unknown or empty format list, with the choices in the message.
    """
    if formats is None:
        return list(DEFAULT_FORMATS)
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    names = [name.strip() for name in names if name.strip()]
    unknown = [name for name in names if name not in FORMATS]
    if unknown or not names:
        raise FlowerError(
            f"unknown export format {', '.join(unknown) or '(none given)'}: choose from "
            f"{', '.join(FORMATS)}. Received: formats={formats!r}"
        )
    return [name for name in FORMATS if name in names]


def _serving_function(model, size: int):
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, INPUT_NAME)])
    def serve(pixels):
        return {OUTPUT_NAME: model(pixels, training=False)}

    return serve


# Pillow's JPEG draft decoding (`flower_core.data.images.load_image`) shrinks by one of these
# libjpeg scales, the largest that keeps both sides at least the model's size.
JPEG_DRAFT_RATIOS = (1, 2, 4, 8)


def _decode_jpeg_like_pillow(encoded, size: int):
    """A JPEG decoded as Pillow's draft mode decodes it: the same libjpeg scale (1/1, 1/2, 1/4
    or 1/8, picked from the undecoded shape) and libjpeg's default accurate integer DCT."""
    import tensorflow as tf

    shape = tf.io.extract_jpeg_shape(encoded)
    scale = tf.minimum(shape[0] // size, shape[1] // size)
    index = tf.reduce_sum(tf.cast(scale >= tf.constant(JPEG_DRAFT_RATIOS[1:]), tf.int32))
    return tf.switch_case(
        index,
        [
            lambda ratio=ratio: tf.io.decode_jpeg(
                encoded, channels=3, ratio=ratio, dct_method="INTEGER_ACCURATE"
            )
            for ratio in JPEG_DRAFT_RATIOS
        ],
    )


def _to_uint8(pixels):
    """Round half up and clip to [0, 255], as Pillow's fixed-point resampling stores a pass."""
    import tensorflow as tf

    return tf.clip_by_value(tf.floor(pixels + 0.5), 0.0, 255.0)


def decode_photo(encoded, size: int):
    """One encoded photo to float32 pixels (size, size, 3), in the graph, built as
    `flower_core.data.images.model_input` builds them: JPEGs decoded at Pillow's draft scale with
    the accurate integer DCT, other formats' first frame as RGB; then Pillow's bilinear resize,
    which filters the width first and stores whole pixel values, then the height.

    Not reproduced: EXIF orientation and compositing transparency onto white.
    """
    import tensorflow as tf

    image = tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: _decode_jpeg_like_pillow(encoded, size),
        lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False),
    )
    image = tf.cast(image, tf.float32)
    wide = _to_uint8(tf.image.resize(image, (tf.shape(image)[0], size), antialias=True))
    return _to_uint8(tf.image.resize(wide, (size, size), antialias=True))


def _bytes_function(model, size: int):
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, BYTES_INPUT_NAME)])
    def serve_bytes(image_bytes):
        pixels = tf.map_fn(
            lambda encoded: decode_photo(encoded, size),
            image_bytes,
            fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
        )
        return {OUTPUT_NAME: model(pixels, training=False)}

    return serve_bytes


def write_saved_model(model, size: int, out: Path) -> None:
    """A SavedModel with the pixels and the encoded-bytes signatures.

    A plain `tf.Module` tracking the model's variables: Keras' `ExportArchive` stores every
    variable twice, this module stores each once.
    """
    import tensorflow as tf

    module = tf.Module()
    module.weights = [variable.value for variable in model.variables]
    module.serve = _serving_function(model, size)
    module.serve_bytes = _bytes_function(model, size)
    tf.saved_model.save(
        module, str(out), signatures={SERVING_SIGNATURE: module.serve, BYTES_SIGNATURE: module.serve_bytes}
    )


def _tflite_converter(saved_model: Path):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=[SERVING_SIGNATURE])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter


def write_tflite_float16(saved_model: Path, out: Path) -> None:
    """TFLite with float16 weights (half the size; the interpreter computes in float32)."""
    import tensorflow as tf

    converter = _tflite_converter(saved_model)
    converter.target_spec.supported_types = [tf.float16]
    out.write_bytes(converter.convert())


def _layer_outputs(calibrated_model: bytes, layers: Iterable[str]) -> list[str]:
    """The TFLite tensors that Keras `layers` write, by name in the calibrated model (a traced
    layer's ops are named `model/LAYER/op` or `model/LAYER_1/op`; fused ops join names with `;`).

    Raises:
        FlowerError: a layer that writes no tensor there, so it would silently stay int8.
    """
    from ai_edge_litert.interpreter import Interpreter

    names = [t["name"] for t in Interpreter(model_content=calibrated_model).get_tensor_details()]
    found = []
    for layer in layers:
        pattern = re.compile(rf"(^|/){re.escape(layer)}(_\d+)?/")
        matches = [name for name in names if any(pattern.search(part) for part in name.split(";"))]
        if not matches:
            raise FlowerError(
                f"int8 export: no layer {layer!r} in the model to keep in float32. "
                f"Received: layers={list(layers)}"
            )
        found += matches
    return found


def write_tflite_int8(
    saved_model: Path,
    out: Path,
    representative: Callable[[], Iterable[np.ndarray]],
    float_layers: Iterable[str] = (),
) -> list[str]:
    """TFLite with int8 weights and activations, calibrated on `representative` photos; input and
    output stay float32, as in every other format.

    Args:
        saved_model: the SavedModel to convert.
        out: the `.tflite` file to write.
        representative: returns an iterable of float32 photos (size, size, 3), read as the test
            photos are; called once per calibration, so the photos can be streamed from disk.
        float_layers: Keras layer names kept in float32 (TFLite's selective quantisation
            through `QuantizationDebugger`). Defaults to `()`: full-integer.

    Returns:
        The TFLite tensors left in float32 (empty when full-integer).
    """
    import tensorflow as tf

    if next(iter(representative()), None) is None:
        raise FlowerError("int8 export needs training photos to calibrate on; none could be read")
    converter = _tflite_converter(saved_model)
    converter.representative_dataset = lambda: ([photo[None]] for photo in representative())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    float_layers = list(float_layers)
    if not float_layers:
        out.write_bytes(converter.convert())
        return []
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=converter.representative_dataset
    )
    nodes = _layer_outputs(debugger.calibrated_model, float_layers)
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=nodes)
    out.write_bytes(debugger.get_nondebug_quantized_model())
    return nodes


def write_onnx(model, size: int, out: Path) -> None:
    """ONNX through `tf2onnx` from the same traced function the SavedModel serves."""

    try:
        import tf2onnx
    except ImportError:
        raise FlowerError(
            "ONNX export needs tf2onnx and onnxruntime (pip install -r "
            "requirements.txt), or leave onnx out of --formats"
        ) from None
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    # tf2onnx's `from_function` makes every non-variable capture of the traced function an ONNX
    # input, such as the mean an unadapted `Normalization` layer holds (EfficientNet's first
    # layer); frozen first, the graph's one input is the pixels.
    frozen = convert_variables_to_constants_v2(_serving_function(model, size).get_concrete_function())
    (pixels,), (probabilities,) = frozen.inputs, frozen.outputs
    tf2onnx.convert.from_graph_def(
        frozen.graph.as_graph_def(),
        input_names=[pixels.name],
        output_names=[probabilities.name],
        tensors_to_rename={pixels.name: INPUT_NAME, probabilities.name: OUTPUT_NAME},
        opset=ONNX_OPSET,
        output_path=str(out),
    )


def saved_model_runner(path: Path, signature: str = SERVING_SIGNATURE) -> Runner:
    """Probabilities from the SavedModel's pixels signature (or, given raw bytes, the other)."""
    import tensorflow as tf

    serve = tf.saved_model.load(str(path)).signatures[signature]
    name = INPUT_NAME if signature == SERVING_SIGNATURE else BYTES_INPUT_NAME
    return lambda batch: serve(**{name: tf.constant(batch)})[OUTPUT_NAME].numpy()


def tflite_runner(path: Path) -> Runner:
    """Probabilities from a TFLite file through LiteRT, one photo per call as on a phone."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count())
    run = interpreter.get_signature_runner(SERVING_SIGNATURE)
    return lambda batch: np.concatenate(
        [run(**{INPUT_NAME: photo[None]})[OUTPUT_NAME] for photo in np.asarray(batch, np.float32)]
    )


def onnx_runner(path: Path) -> Runner:
    """Probabilities from the ONNX file through ONNX Runtime on the CPU."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda batch: session.run([OUTPUT_NAME], {INPUT_NAME: np.asarray(batch, np.float32)})[0]


def runner(name: str, folder: Path) -> Runner:
    """The runtime of format `name`, loaded from the export folder `folder`."""
    path = Path(folder) / FORMATS[name].path
    if name == "saved_model":
        return saved_model_runner(path)
    if name == "onnx":
        return onnx_runner(path)
    return tflite_runner(path)


def size_bytes(path: Path) -> int:
    """A file's size, or a folder's total."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
