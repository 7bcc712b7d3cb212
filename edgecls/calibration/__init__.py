"""INT8 calibration: stratified training images, ONNX Runtime static Q/DQ, and the TensorRT cache."""
