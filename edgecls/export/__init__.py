"""Export: PyTorch → bundle (ONNX FP32/FP16/INT8, sealed manifest). TensorRT engines are built by
`edgecls.runtime.engines`, which the target's torch-less runtime uses too."""
