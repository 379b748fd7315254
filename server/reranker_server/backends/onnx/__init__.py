"""ONNX Runtime: the graph export (with pooling), kernel fusion, int8, and the backend that runs it."""
