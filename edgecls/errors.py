"""Typed errors. Each message names the problem and the fix; none of them needs torch."""


class EdgeclsError(Exception):
    """Base class: catch this to handle every edgecls failure in robot code."""


class ConfigError(EdgeclsError, ValueError):
    """A model name, option or argument is invalid."""


class DatasetError(EdgeclsError):
    """A dataset is missing, malformed or unsafe."""


class UnsafePickleError(DatasetError):
    """A pickle asked to build an object outside the allow-list."""


class CheckpointError(EdgeclsError):
    """A checkpoint cannot be loaded or does not match the model."""


class TrainingDivergedError(EdgeclsError):
    """The training loss became NaN or infinite; nothing of that epoch is saved."""


class BundleError(EdgeclsError):
    """A bundle directory or its manifest is missing, malformed or tampered with."""


class IntegrityError(BundleError):
    """A bundle file's size or sha256 differs from the manifest: truncated, edited or replaced."""


class SignatureError(BundleError):
    """A bundle is unsigned, or not signed by the trusted key, where a signature is required."""


class ExportError(EdgeclsError):
    """Export produced a model that disagrees with PyTorch or fails validation."""


class AccuracyDropError(ExportError):
    """A reduced-precision model lost more accuracy than allowed."""


class BackendUnavailableError(EdgeclsError):
    """The requested inference backend is not installed or has no device here."""


class EngineMismatchError(BackendUnavailableError):
    """A TensorRT engine was built for another GPU, TensorRT version or ONNX file."""


class InputError(EdgeclsError, ValueError):
    """A frame or batch handed to the runtime has the wrong dtype, shape, channels or values."""


class SourceError(EdgeclsError):
    """A camera, video, stream or image directory cannot be opened."""


class OutputError(EdgeclsError):
    """A video output (file, display, RTP or RTSP stream) cannot be opened or written."""


class RemoteError(EdgeclsError):
    """An `edgecls serve` server refused or failed a request."""


class RemoteTimeoutError(RemoteError):
    """An `edgecls serve` server did not answer within the request's deadline."""


class RemoteUnavailableError(RemoteError):
    """No `edgecls serve` server answers at that address."""


class ServerDiedError(EdgeclsError):
    """`edgecls serve`'s Triton Inference Server process stopped without being asked."""


class BusyError(EdgeclsError):
    """Another edgecls process is writing the same output right now."""
