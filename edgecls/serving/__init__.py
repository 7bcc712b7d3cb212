"""Serving a bundle: `edgecls serve` (Triton behind edgecls' HTTP and gRPC doors), the Triton model file and its
repository writer, and `RemoteClassifier`, the client. `RemoteClassifier` is resolved on first use, so a robot that
only calls a server needs tritonclient and nothing of Triton's server."""

__all__ = ["RemoteClassifier"]


def __getattr__(name: str):
    if name == "RemoteClassifier":
        from edgecls.serving.remote import RemoteClassifier

        return RemoteClassifier
    raise AttributeError(f"module 'edgecls.serving' has no attribute {name!r}")
