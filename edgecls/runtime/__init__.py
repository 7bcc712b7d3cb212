"""The deploy runtime: load a bundle, classify frames. Never imports torch, training, data or export code.

`Classifier`, `Prediction` and `Predictor` (what a local and a remote classifier offer) are resolved on first use,
so that importing one runtime module does not load the inference backends.
"""

__all__ = ["Classifier", "Prediction", "Predictor"]


def __getattr__(name: str):
    if name in __all__:
        from edgecls.runtime import classifier

        return getattr(classifier, name)
    raise AttributeError(f"module 'edgecls.runtime' has no attribute {name!r}")
