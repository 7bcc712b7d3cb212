"""Export: PyTorch → bundle (ONNX FP32/FP16/INT8, manifest) and ONNX → TensorRT engines.

Kept import-free so `edgecls.export.tensorrt` can be used by the torch-less runtime.
"""
