"""Part of layer 5, backends: ONNX Runtime, with the graph export (pooling included), kernel
fusion, int8, and the backend that runs the graph."""
