"""edgecls: train, export and run image classifiers on edge devices.

Importing the package is cheap on purpose: torch, onnx, tensorrt and pycuda are imported only by the
modules that need them, so a robot that installs just the runtime can `import edgecls.runtime`.
"""

__version__ = "0.1.0"
