"""The deploy runtime: load a bundle, classify frames, drive a camera. Never imports torch."""

from edgecls.runtime.classifier import Classifier, Prediction

__all__ = ["Classifier", "Prediction"]
