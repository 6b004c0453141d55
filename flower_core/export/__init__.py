"""A run's model in other formats (SavedModel, TFLite, ONNX), verified, with its card and snippets."""
