"""The "use it" code written beside each exported model: the exact text a person copies.

Each snippet is a file in the export folder, shown again in `model_card.md`; the tests run the
files as written (`tests/test_export.py`), so the code in a model card cannot rot. The Python
snippets need only their runtime, NumPy and Pillow, and prepare a photo as the studio does:
RGB, resized to the square input with bilinear filtering, float32 pixels in [0, 255].
"""

from __future__ import annotations

from flower_core.export.formats import (
    BYTES_SIGNATURE,
    FORMATS,
    INPUT_NAME,
    OUTPUT_NAME,
    SERVING_SIGNATURE,
)

LABELS_FILE = "labels.txt"
TF_SERVING_SNIPPET = "tf_serving.sh"
TF_SERVING_MODEL_NAME = "flowers"
TF_SERVING_PORT = 8501

_PREAMBLE = '''"""Classify one photo: python {script} photo.jpg (run in the export folder)."""
import sys

import numpy as np
from PIL import Image
{imports}
SIZE = {size}
labels = open("{labels}").read().splitlines()
image = Image.open(sys.argv[1]).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
pixels = np.asarray(image, dtype=np.float32)[None]  # (1, SIZE, SIZE, 3): RGB, 0-255
'''

_EPILOGUE = """for label, p in sorted(zip(labels, probabilities), key=lambda pair: -pair[1]):
    print(f"{label}: {p:.6f}")
"""

_BODIES = {
    "saved_model": (
        "import tensorflow as tf\n",
        f'model = tf.saved_model.load("{FORMATS["saved_model"].path}")\n'
        f'outputs = model.signatures["{SERVING_SIGNATURE}"]({INPUT_NAME}=tf.constant(pixels))\n'
        f'probabilities = outputs["{OUTPUT_NAME}"].numpy()[0]\n',
    ),
    "tflite": (
        "from ai_edge_litert.interpreter import Interpreter\n",
        'interpreter = Interpreter(model_path="{path}")\n'
        f'run = interpreter.get_signature_runner("{SERVING_SIGNATURE}")\n'
        f'probabilities = run({INPUT_NAME}=pixels)["{OUTPUT_NAME}"][0]\n',
    ),
    "onnx": (
        "import onnxruntime\n",
        'session = onnxruntime.InferenceSession("{path}", providers=["CPUExecutionProvider"])\n'
        f'probabilities = session.run(["{OUTPUT_NAME}"], {{"{INPUT_NAME}": pixels}})[0][0]\n',
    ),
}

_TF_SERVING = f'''# Serve the SavedModel with TensorFlow Serving (Docker), from the export folder:
docker run --rm -p {TF_SERVING_PORT}:{TF_SERVING_PORT} \\
  -v "$PWD/{FORMATS["saved_model"].path}:/models/{TF_SERVING_MODEL_NAME}/1" \\
  -e MODEL_NAME={TF_SERVING_MODEL_NAME} tensorflow/serving &
# In another shell: post a photo, base64-encoded, to the signature that decodes it.
printf '{{"signature_name": "{BYTES_SIGNATURE}", "instances": [{{"b64": "%s"}}]}}' \\
  "$(base64 -w0 photo.jpg)" > request.json
curl -s -d @request.json http://localhost:{TF_SERVING_PORT}/v1/models/{TF_SERVING_MODEL_NAME}:predict
# The answer: {{"predictions": [[p1, p2, ...]]}}, in the order of {LABELS_FILE}.
'''


def snippet_file(name: str) -> str:
    """The snippet's file name for format `name` (`use_<format>.py`)."""
    return f"use_{name}.py"


def python_snippet(name: str, size: int) -> str:
    """The Python code that classifies one photo with format `name` at input size `size`."""
    kind = "tflite" if name.startswith("tflite") else name
    imports, body = _BODIES[kind]
    head = _PREAMBLE.format(script=snippet_file(name), imports=imports, size=size, labels=LABELS_FILE)
    return head + body.replace("{path}", FORMATS[name].path) + _EPILOGUE


def snippets(formats: list[str], size: int) -> dict[str, str]:
    """Every snippet of an export: file name to text (with the TF Serving one for SavedModel)."""
    files = {snippet_file(name): python_snippet(name, size) for name in formats}
    if "saved_model" in formats:
        files[TF_SERVING_SNIPPET] = _TF_SERVING
    return files
