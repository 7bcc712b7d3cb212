"""The model zoo. Importing it registers every model family."""

from edgecls.zoo import classic, custom, mobilenet, resnet, whitened  # noqa: F401  (registration side effect)
from edgecls.zoo.registry import (
    ModelInfo,
    count_macs,
    count_parameters,
    create_model,
    list_models,
    model_info,
    register_model,
)

__all__ = ["ModelInfo", "count_macs", "count_parameters", "create_model", "list_models", "model_info", "register_model"]
