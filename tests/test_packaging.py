"""Packaging that never lays a CPU build over a GPU one: the OpenCV and ONNX Runtime flavours are extras."""

import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

from edgecls import doctor

PROJECT = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
FLAVOURED = ("onnxruntime", "opencv")


def _names(requirements: list[str]) -> list[str]:
    return [r.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip() for r in requirements]


def test_no_dependency_outside_the_flavour_extras_names_an_onnxruntime_or_opencv_build():
    """`pip install edgecls[train,serve,jetson,...]` over onnxruntime-gpu or JetPack's OpenCV leaves them in place."""
    extras = PROJECT["optional-dependencies"]
    for group, requirements in [("dependencies", PROJECT["dependencies"]), *extras.items()]:
        if group in ("cpu", "gpu"):
            continue
        assert not [n for n in _names(requirements) if n.startswith(FLAVOURED)], group
    assert set(_names(extras["cpu"])) == {"onnxruntime", "opencv-python-headless", "matplotlib"}
    assert set(_names(extras["gpu"])) == {"onnxruntime-gpu", "opencv-python-headless", "matplotlib"}


def test_the_jetson_install_asks_for_no_numpy_newer_than_jetpacks():
    """JetPack 6 ships numpy 1.21 and builds OpenCV and TensorRT against it: the core and [jetson] requirements accept
    it and bring nothing whose wheels need a newer one (matplotlib's contourpy asks for numpy >= 1.25)."""
    requirements = PROJECT["dependencies"] + PROJECT["optional-dependencies"]["jetson"]
    assert "matplotlib" not in _names(requirements)
    (numpy,) = [r for r in requirements if r.startswith("numpy")]
    assert numpy == "numpy>=1.21"


def test_doctor_warns_when_two_onnxruntime_builds_share_the_module_and_a_jetson_lacks_gstreamer():
    env = {
        "onnxruntime_packages": ["onnxruntime 1.20.0", "onnxruntime-gpu 1.20.0"],
        "jetson": True,
        "video_io": {"gstreamer": False, "module": "/venv/cv2"},
        "opencv_packages": ["opencv-python-headless 4.11"],
    }
    warnings = doctor.install_warnings(env)
    assert len(warnings) == 2
    assert "onnxruntime 1.20.0 and onnxruntime-gpu 1.20.0 are both installed" in warnings[0]
    assert "csi:// cameras cannot open" in warnings[1] and "opencv-python-headless" in warnings[1]
    assert doctor.install_warnings({**env, "onnxruntime_packages": ["onnxruntime-gpu 1.20.0"], "jetson": False}) == []


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (inside functions too), and every literal `import_module` name."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            found |= {arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)}
    return found


@pytest.mark.parametrize(
    "room, above",
    [
        (
            "runtime",
            (
                "torch",
                "torchvision",
                "edgecls.train",
                "edgecls.data",
                "edgecls.export",
                "edgecls.camera",
                "edgecls.serving",
                "edgecls.cli",
            ),
        ),
        ("camera", ("torch", "edgecls.train", "edgecls.data", "edgecls.export", "edgecls.serving", "edgecls.cli")),
        ("serving", ("torch", "edgecls.train", "edgecls.data", "edgecls.camera", "edgecls.cli")),
    ],
)
def test_a_room_imports_nothing_from_the_rooms_above_it(room, above):
    """The runtime is what a robot or a Jetson installs (no torch, no training, datasets or export code): it stands
    below them, lazy imports included. Camera and serving stand on it, beside each other, below the command line;
    the camera replays a test set its caller loaded."""
    root = Path(__file__).parents[1] / "edgecls" / room
    reached = {
        f"{path.relative_to(root.parent)} imports {module}"
        for path in root.rglob("*.py")
        for module in _imported_modules(path)
        if any(module == name or module.startswith(name + ".") for name in above)
    }
    assert not reached
