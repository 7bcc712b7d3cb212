"""The deploy runtime: load a bundle, classify frames, drive a camera. Never imports torch.

`Classifier`, `Prediction`, `Predictor` (what both classifiers offer) and `RemoteClassifier` are resolved on
first use, so that importing one runtime module (the camera's sources, the web view) does not load the inference
backends.
"""

__all__ = ["Classifier", "Prediction", "Predictor", "RemoteClassifier"]


def __getattr__(name: str):
    if name == "RemoteClassifier":
        from edgecls.runtime.remote import RemoteClassifier

        return RemoteClassifier
    if name in __all__:
        from edgecls.runtime import classifier

        return getattr(classifier, name)
    raise AttributeError(f"module 'edgecls.runtime' has no attribute {name!r}")
