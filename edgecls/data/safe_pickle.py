"""Load dataset pickles without letting them run code.

`pickle.load` on an untrusted file can execute anything its author wrote. CIFAR's batches contain only
dicts, lists, bytes, strings, ints and (in some copies) numpy arrays, so the unpickler resolves exactly
the globals needed to rebuild numpy arrays and refuses every other one.
"""

from __future__ import annotations

import importlib.util
import io
import pickle
from typing import Any

from edgecls.errors import UnsafePickleError

_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    # Python 3 re-pickling bytes with protocol ≤ 2 writes them as _codecs.encode(str, "latin1"): a pure data transform.
    ("_codecs", "encode"),
}


# numpy 2 pickles arrays as numpy._core.multiarray, numpy 1 as numpy.core.multiarray: a batch written under either
# must load under the other (JetPack's system numpy is 1.x, a desktop's is 2.x).
_NUMPY_CORE = "numpy._core" if importlib.util.find_spec("numpy._core") else "numpy.core"


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"refused to load {module}.{name} from a dataset pickle: only plain data and numpy arrays are "
                "allowed. The file is not an official dataset batch; re-extract it from a trusted archive."
            )
        if module.endswith(".multiarray"):
            module = f"{_NUMPY_CORE}.multiarray"
        return super().find_class(module, name)


def safe_load(data: bytes, name: str = "pickle") -> Any:
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except UnsafePickleError:
        raise
    except Exception as exc:
        raise UnsafePickleError(
            f"{name} is not a readable pickle ({exc}); re-extract it from a trusted archive"
        ) from exc
