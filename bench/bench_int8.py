"""Where int8 TFLite loses a run's top class: TensorFlow Lite's QuantizationDebugger per layer, then
the agreement with Keras on the run's test photos of full-integer int8 and of int8 with some
layers kept float32 (`--float` groups), each as one JSON line.

The debugger runs every int8 op on the same dequantised input as its float twin; `rmse_steps` is
that op's error in its own quantisation steps (about 0.3 is rounding alone). docs/EXPORT.md reads
these figures for MobileNet; on its 96 px synthetic run this printed 2.75 and 2.70 steps for
`conv_dw_1` and `conv_pw_1`, and 88.9% agreement full-integer against 97.8% with those two float.

    FLOWER_WEIGHTS_DIR=/work/shared/weights python bench/bench_int8.py RUN_DIR \\
        --float conv_dw_1,conv_pw_1 --float conv_pw_13
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit  # noqa: E402
from flower_core.evaluation.predict import load_run  # noqa: E402
from flower_core.export import exporter as export
from flower_core.export import formats as export_formats  # noqa: E402

DEBUG_PHOTOS = 64


def layer_errors(saved_model: Path, representative) -> list[dict]:
    """Each quantised op's error in quantisation steps, as QuantizationDebugger measures it."""
    import pandas as pd
    import tensorflow as tf

    converter = export_formats._tflite_converter(saved_model)
    converter.representative_dataset = lambda: ([photo[None]] for photo in representative())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    photos = [photo for _, photo in zip(range(DEBUG_PHOTOS), representative(), strict=False)]
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=lambda: ([photo[None]] for photo in photos)
    )
    debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    dump.seek(0)
    table = pd.read_csv(dump)
    return [
        {
            "op": row.op_name,
            "tensor": row.tensor_name.split(";")[0],
            "range": round(255 * row.scale, 3),
            "rmse_steps": round(float(np.sqrt(row.mean_squared_error) / row.scale), 3),
        }
        for row in table.itertuples()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument(
        "--float",
        action="append",
        default=[],
        help="comma-separated Keras layers to keep float32 (repeat for more variants)",
    )
    args = parser.parse_args()
    config = json.loads((args.run / "config.json").read_text())
    split = json.loads((args.run / "split.json").read_text())
    model, _ = load_run(args.run)
    size, root = int(model.input_shape[1]), Path(config["data_root"])
    test, reference, _ = export._reference(model, root, split["test"])
    representative = export._representative(root, split["train"], size)
    with tempfile.TemporaryDirectory() as scratch:
        saved_model = Path(scratch) / "saved_model"
        export_formats.write_saved_model(model, size, saved_model)
        emit("int8_layer_errors", run=args.run.name, layers=layer_errors(saved_model, representative))
        for group in ["", *args.float]:
            layers = [name for name in group.split(",") if name]
            target = Path(scratch) / "model_int8.tflite"
            export_formats.write_tflite_int8(saved_model, target, representative, layers)
            got, _ = export._batched(export_formats.tflite_runner(target), root, test, size)
            emit(
                "int8_agreement",
                run=args.run.name,
                float_layers=layers,
                photos=len(test),
                agreement=float((got.argmax(1) == reference.argmax(1)).mean()),
                size_bytes=target.stat().st_size,
            )


if __name__ == "__main__":
    main()
