"""The names the command line and the library share: datasets, normalizations, optimizers, schedules, padding,
colour orders, export targets, calibration methods, backends and precisions.

Plain tuples with no imports, so `edgecls --help` can list them without loading numpy or OpenCV, and each list is
written once: the loaders, the training config and the help text all read it from here."""

DATASETS = ("cifar10", "cifar100", "cifar100-coarse", "mnist", "fashion-mnist", "folder")
NORMALIZATIONS = ("zscore", "minmax")
OPTIMIZERS = ("sgd", "adam", "adamw", "adadelta")
SCHEDULES = ("cosine", "linear", "step", "plateau", "constant")
PAD_MODES = ("zeros", "reflect")
COLORS = ("bgr", "rgb")
EXPORT_TARGETS = ("cpu", "tensorrt", "all")
CPU_CALIB_METHODS = ("minmax", "entropy", "percentile")  # ONNX Runtime's quantizer
TENSORRT_CALIB_METHODS = ("minmax", "entropy")  # NVIDIA ModelOpt's
BACKENDS = ("onnxruntime", "tensorrt", "torch")  # the runtime's, in `edgecls.runtime.backends`
PRECISIONS = ("fp32", "fp16", "int8")
