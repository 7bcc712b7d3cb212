"""edgecls' TensorRT code against the real Python API of every TensorRT it serves, without TensorRT or a GPU.

NVIDIA's binding wheels (`tensorrt-bindings`, `tensorrt-cu12-bindings`, `tensorrt-cu13-bindings`) hold the
compiled module of each version; only their libraries (`tensorrt-*-libs`) are out of reach here. Linked
against stand-in libraries that define just the factory symbols (tests/trt_stubs), the module imports and
lists its real classes, enums and methods. Each version is imported in its own process.

Two checks: every `trt.` name the code uses is known to this table (the table cannot go stale), and every
name a code path uses exists in each version that path serves; and `build_plan`'s feature checks, run on
the real module, pick the path each version needs.
"""

from __future__ import annotations

import ast
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUBS = Path(__file__).parent / "trt_stubs"
WHEELS = {  # version → pip requirement; 10.3 is JetPack 6.1/6.2's TensorRT
    "8.6.1": "tensorrt-bindings==8.6.1",
    "10.3.0": "tensorrt-cu12-bindings==10.3.0",
    "10.13.3": "tensorrt-cu12-bindings==10.13.3.9.post1",
    "11.4.0": "tensorrt-cu13-bindings==11.4.0.106",
}
ALL = tuple(WHEELS)
WITH_PRECISION_FLAGS = ("8.6.1", "10.3.0", "10.13.3")
PATHS = {
    "common": (
        ALL,
        [
            "Logger",
            "Logger.WARNING",
            "Builder",
            "Builder.create_network",
            "Builder.create_builder_config",
            "Builder.create_optimization_profile",
            "Builder.build_serialized_network",
            "NetworkDefinitionCreationFlag",
            "BuilderFlag",
            "OnnxParser",
            "OnnxParser.parse",
            "OnnxParser.get_error",
            "OnnxParser.num_errors",
            "INetworkDefinition.num_inputs",
            "INetworkDefinition.get_input",
            "IBuilderConfig",
            "IBuilderConfig.set_memory_pool_limit",
            "IBuilderConfig.set_flag",
            "IBuilderConfig.clear_flag",
            "BuilderFlag.TF32",
            "IBuilderConfig.add_optimization_profile",
            "MemoryPoolType",
            "MemoryPoolType.WORKSPACE",
            "IBuilderConfig.create_timing_cache",
            "IBuilderConfig.set_timing_cache",
            "ITimingCache",
            "ITimingCache.serialize",
            "IOptimizationProfile.set_shape",
            "Runtime",
            "Runtime.deserialize_cuda_engine",
            "ICudaEngine.create_execution_context",
            "ICudaEngine.num_io_tensors",
            "ICudaEngine.get_tensor_name",
            "ICudaEngine.get_tensor_mode",
            "ICudaEngine.get_tensor_dtype",
            "ICudaEngine.get_tensor_profile_shape",
            "TensorIOMode",
            "TensorIOMode.INPUT",
            "TensorIOMode.OUTPUT",
            "nptype",
            "IExecutionContext.set_input_shape",
            "IExecutionContext.get_tensor_shape",
            "IExecutionContext.set_tensor_address",
            "IExecutionContext.execute_async_v3",
        ],
    ),
    "builder-flags": (WITH_PRECISION_FLAGS, ["BuilderFlag.FP16", "BuilderFlag.INT8", "BuilderFlag.__doc__"]),
    "explicit-batch": (
        WITH_PRECISION_FLAGS,
        ["NetworkDefinitionCreationFlag.EXPLICIT_BATCH"],
    ),  # set wherever it exists
    "strongly-typed": (("10.3.0", "10.13.3", "11.4.0"), ["NetworkDefinitionCreationFlag.STRONGLY_TYPED"]),
}
CODE = [
    ROOT / "edgecls" / "runtime" / "engines.py",
    ROOT / "edgecls" / "runtime" / "backends" / "tensorrt.py",
    ROOT / "edgecls" / "first_run.py",
]

# How edgecls calls each TensorRT function: the kinds of the positional arguments it passes, in order. A test reads
# the calls in CODE and holds them to this table (arity), and each version's own docstrings to it (types).
CALLS = {
    "Logger.__init__": ["Severity"],
    "Builder.__init__": ["Logger"],
    "Builder.create_network": ["int"],
    "Builder.create_builder_config": [],
    "Builder.create_optimization_profile": [],
    "Builder.build_serialized_network": ["INetworkDefinition", "IBuilderConfig"],
    "OnnxParser.__init__": ["INetworkDefinition", "Logger"],
    "OnnxParser.parse": ["bytes"],
    "OnnxParser.get_error": ["int"],
    "INetworkDefinition.get_input": ["int"],
    "IBuilderConfig.set_memory_pool_limit": ["MemoryPoolType", "int"],
    "IBuilderConfig.set_flag": ["BuilderFlag"],
    "IBuilderConfig.clear_flag": ["BuilderFlag"],
    "IBuilderConfig.create_timing_cache": ["bytes"],
    "IBuilderConfig.set_timing_cache": ["ITimingCache", "bool"],
    "IBuilderConfig.add_optimization_profile": ["IOptimizationProfile"],
    "IOptimizationProfile.set_shape": ["str", "tuple", "tuple", "tuple"],
    "ITimingCache.serialize": [],
    "Runtime.__init__": ["Logger"],
    "Runtime.deserialize_cuda_engine": ["bytes"],
    "ICudaEngine.create_execution_context": [],
    "ICudaEngine.get_tensor_name": ["int"],
    "ICudaEngine.get_tensor_mode": ["str"],
    "ICudaEngine.get_tensor_dtype": ["str"],
    "ICudaEngine.get_tensor_profile_shape": ["str", "int"],
    "IExecutionContext.set_input_shape": ["str", "tuple"],
    "IExecutionContext.get_tensor_shape": ["str"],
    "IExecutionContext.set_tensor_address": ["str", "int"],
    "IExecutionContext.execute_async_v3": ["int"],
    "nptype": ["DataType"],
}
# What a docstring's parameter type may say for each kind passed (pybind11 converts a tuple to Dims; 11.x writes
# typing.SupportsInt and typing_extensions.Buffer where 8.6 wrote int and buffer; a Logger is an ILogger).
ACCEPTS = {
    "int": {"int", "SupportsInt"},
    "bytes": {"buffer", "Buffer"},
    "tuple": {"Dims", "tuple", "list"},
    "Logger": {"ILogger", "Logger"},
    "Severity": {"Severity"},
}

PROBE = """
import inspect, json, sys
import tensorrt_bindings as trt
from edgecls.runtime.engines import build_plan

def signatures(path):
    obj = trt
    for part in path.split("."):
        obj = getattr(obj, part)
    if inspect.isfunction(obj):  # nptype is Python
        return [[[n, "DataType", p.default is not p.empty] for n, p in inspect.signature(obj).parameters.items()]]
    return [line.split(". ", 1)[-1] for line in (obj.__doc__ or "").splitlines() if "(self" in line and "->" in line]

def has(path):
    obj = trt
    for part in path.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True

names = json.loads(sys.argv[1])
print(json.dumps({"version": trt.__version__, "names": {n: has(n) for n in names},
                  "plans": {p: build_plan(trt, p) for p in ("fp32", "fp16", "int8")},
                  "signatures": {c: signatures(c) for c in json.loads(sys.argv[2])}}))
"""


def _trt_names_in_code() -> set[str]:
    """Every attribute chain rooted at `trt` (trt.BuilderFlag.FP16 → 'BuilderFlag.FP16') and hasattr(trt, 'X')."""
    found = set()
    for path in CODE:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                chain, inner = [], node
                while isinstance(inner, ast.Attribute):
                    chain.append(inner.attr)
                    inner = inner.value
                if isinstance(inner, ast.Name) and inner.id == "trt" and chain[-1] != "__version__":
                    found.add(".".join(reversed(chain)))
            elif (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", "") == "hasattr"
                and len(node.args) == 2
                and isinstance(node.args[0], ast.Name)
                and node.args[0].id == "trt"
            ):
                found.add(node.args[1].value)
    return found


def test_every_trt_name_in_the_code_is_in_the_table():
    table = {name for _, names in PATHS.values() for name in names}
    assert _trt_names_in_code() - table == set()


def _download(requirement: str, cache: Path) -> Path | None:
    name, version = requirement.split("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    if not list(cache.glob(pattern)):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                str(cache),
                requirement,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    wheels = sorted(cache.glob(pattern))
    return wheels[0] if wheels else None


def _build_stubs(out: Path) -> dict[str, Path]:
    dirs = {}
    for major in ("8", "10", "11"):
        folder = out / f"v{major}"
        folder.mkdir(parents=True, exist_ok=True)
        for lib in ("nvinfer", "nvonnxparser", "nvinfer_plugin"):
            subprocess.run(
                [
                    "gcc",
                    "-shared",
                    "-fPIC",
                    "-o",
                    str(folder / f"lib{lib}.so.{major}"),
                    f"-Wl,-soname,lib{lib}.so.{major}",
                    str(STUBS / "factories.c"),
                ],
                check=True,
            )
        dirs[major] = folder
    subprocess.run(
        [
            "g++",
            "-shared",
            "-fPIC",
            "-o",
            str(dirs["8"] / "libnvparsers.so.8"),
            "-Wl,-soname,libnvparsers.so.8",
            str(STUBS / "parsers8.cpp"),
        ],
        check=True,
    )
    return dirs


@pytest.fixture(scope="module")
def real_apis(tmp_path_factory) -> dict[str, dict]:
    if sys.platform != "linux" or platform.machine() != "x86_64" or not (shutil.which("gcc") and shutil.which("g++")):
        pytest.skip("the binding wheels are inspected on x86_64 Linux with gcc and g++")
    cache = Path(os.environ.get("EDGECLS_CACHE", Path.home() / ".cache" / "edgecls")) / "tensorrt-bindings"
    cache.mkdir(parents=True, exist_ok=True)
    stubs = _build_stubs(tmp_path_factory.mktemp("trt_stubs"))
    names = sorted({name for _, names in PATHS.values() for name in names})
    apis, missing = {}, []
    for version, requirement in WHEELS.items():
        wheel = _download(requirement, cache)
        if wheel is None:
            missing.append(requirement)
            continue
        unpacked = cache / wheel.stem
        if not unpacked.is_dir():
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(unpacked)
        env = {
            **os.environ,
            "LD_LIBRARY_PATH": str(stubs[version.split(".")[0]]),
            "PYTHONPATH": os.pathsep.join([str(unpacked), str(ROOT)]),
        }
        result = subprocess.run(
            [sys.executable, "-c", PROBE, json.dumps(names), json.dumps(sorted(CALLS))],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert result.returncode == 0, (
            f"TensorRT {version} bindings did not load against the stubs: {result.stderr[-2000:]}"
        )
        apis[version] = {**json.loads(result.stdout), "env": env}
    if missing:
        pytest.skip(f"could not download {', '.join(missing)} (no registry access?); the API check needs all four")
    return apis


def test_each_code_path_uses_only_names_its_tensorrt_versions_have(real_apis):
    absent = [
        f"{path}: {name} missing in TensorRT {version}"
        for path, (versions, names) in PATHS.items()
        for version in versions
        for name in names
        if not real_apis[version]["names"][name]
    ]
    assert absent == []
    assert {v: real_apis[v]["version"].startswith(v) for v in ALL} == dict.fromkeys(ALL, True)


def test_feature_checks_pick_the_path_each_version_needs(real_apis):
    for version in ("8.6.1", "10.3.0"):  # precisions from builder flags
        plans = real_apis[version]["plans"]
        assert plans["fp16"]["builder_flags"] == ["FP16"] and plans["fp32"]["builder_flags"] == []
        assert plans["fp16"]["mode"] == plans["fp32"]["mode"] == "weakly-typed"
    # 10.12 deprecated the FP16 flag ("superseded by strong typing"): FP16 from the FP16 graph, strongly typed
    assert real_apis["10.13.3"]["plans"]["fp16"] == {
        "creation_flags": ["EXPLICIT_BATCH", "STRONGLY_TYPED"],
        "builder_flags": [],
        "mode": "strongly-typed",
    }
    # 8.6 cannot type networks strongly: the Q/DQ graph is built weakly typed, with the flags its FP16 parts need
    assert real_apis["8.6.1"]["plans"]["int8"] == {
        "creation_flags": ["EXPLICIT_BATCH"],
        "builder_flags": ["FP16", "INT8"],
        "mode": "explicit-qdq-weakly-typed",
    }
    assert real_apis["8.6.1"]["plans"]["fp32"]["creation_flags"] == [
        "EXPLICIT_BATCH"
    ]  # 8.x builds implicit batch otherwise
    for version in ("10.3.0", "10.13.3"):  # ModelOpt graphs are built strongly typed wherever TensorRT can
        plan = real_apis[version]["plans"]["int8"]
        assert (
            "STRONGLY_TYPED" in plan["creation_flags"]
            and plan["builder_flags"] == []
            and plan["mode"] == "strongly-typed"
        )
    for precision, plan in real_apis["11.4.0"]["plans"].items():
        assert plan == {"creation_flags": ["STRONGLY_TYPED"], "builder_flags": [], "mode": "strongly-typed"}, precision


CHOOSE = """
import json, sys
import tensorrt_bindings
sys.modules["tensorrt"] = tensorrt_bindings  # the real module of this version, under the name edgecls imports
from edgecls.bundle import Bundle
from edgecls.runtime import backends
from edgecls.runtime.engines import buildable_precisions, engine_source

backends.tensorrt_installed = lambda: True  # a GPU machine: TensorRT, cuda-python and one device
backends.installed_cuda_api = lambda: "cuda-python"
backends.cuda_device_count = lambda: (1, "")
bundle = Bundle.open(sys.argv[1])
backend, precision, device, why = backends.choose(bundle)
can, cannot = buildable_precisions(bundle, tensorrt_bindings)
print(json.dumps({"choice": [backend, precision, device], "why": why, "can": can, "cannot": cannot,
                  "fp16_from": engine_source(bundle, "fp16", tensorrt_bindings).name}))
"""


def test_auto_on_a_default_bundle_picks_what_each_real_tensorrt_can_build(real_apis, bundle_dir):
    """JetPack 6.0's TensorRT 8.6 cannot parse the default INT8 graph (ModelOpt, opset 19, FP16 scales): `auto` must
    pick FP16 there and say why, and build-engine's default must leave INT8 out; 10.x and 11.x take INT8. FP16 comes
    from the FP16 graph, strongly typed, where the FP16 builder flag is deprecated (10.12 on) or gone (11)."""
    choices = {}
    for version, api in real_apis.items():
        result = subprocess.run(
            [sys.executable, "-c", CHOOSE, str(bundle_dir)], capture_output=True, text=True, env=api["env"], timeout=120
        )
        assert result.returncode == 0, f"{version}: {result.stderr[-2000:]}"
        choices[version] = json.loads(result.stdout)
    old = choices["8.6.1"]
    assert old["choice"] == ["tensorrt", "fp16", "cuda:0"] and old["can"] == ["fp16", "fp32"]
    assert "not int8" in old["why"] and "--tensorrt8" in old["why"] and "JetPack 6.0" in old["cannot"]["int8"]
    for version in ("10.3.0", "10.13.3", "11.4.0"):
        assert choices[version]["choice"] == ["tensorrt", "int8", "cuda:0"], version
        assert choices[version]["can"] == ["int8", "fp16", "fp32"], version
    assert {v: c["fp16_from"] for v, c in choices.items()} == {
        "8.6.1": "model.onnx",
        "10.3.0": "model.onnx",
        "10.13.3": "model.fp16.onnx",
        "11.4.0": "model.fp16.onnx",
    }


def _parameters(signature) -> list[tuple[str, str, bool]]:
    """(name, type's last component, has a default) of a pybind11 docstring signature, `self` left out."""
    if isinstance(signature, list):  # a Python function, listed by the probe itself
        return [tuple(p) for p in signature]
    inner = signature[signature.index("(") + 1 : signature.rindex(") ->")]
    found = re.findall(r"(\w+): ([\w.]+(?:\[[^\]]*\])?)( = (?:<[^>]*>|[^,]*))?", inner)
    return [(name, kind.split("[")[0].rsplit(".", 1)[-1], bool(default)) for name, kind, default in found][1:]


def _accepts(signature, passed: list[str]) -> bool:
    params = _parameters(signature)
    required = sum(1 for _, _, default in params if not default)
    if not required <= len(passed) <= len(params):
        return False
    return all(kind in ACCEPTS.get(want, {want}) for want, (_, kind, _) in zip(passed, params, strict=False))


def test_every_tensorrt_call_matches_a_signature_of_each_version_it_serves(real_apis):
    """Argument counts and types from each version's own docstrings (8.6, 10.3, 10.13, 11.4), not only names: a call
    edgecls makes must fit one overload of every TensorRT whose path uses it."""
    serves = {name: versions for versions, names in PATHS.values() for name in names}
    wrong = []
    for call, passed in CALLS.items():
        name = call.removesuffix(".__init__")
        for version in serves.get(name, ALL):
            signatures = real_apis[version]["signatures"][call]
            if not signatures or not any(_accepts(sig, passed) for sig in signatures):
                wrong.append(f"TensorRT {version}: {call}({', '.join(passed)}) fits none of {signatures}")
    assert wrong == []


def test_the_calls_in_the_code_pass_what_the_call_table_says():
    """Every call of a TensorRT method or constructor in CODE passes as many positional arguments as CALLS lists, and
    no keyword arguments: the table the signature test checks is the code's."""
    methods = {call.split(".")[-1] if not call.endswith("__init__") else call.split(".")[0]: call for call in CALLS}
    seen, wrong = set(), []
    for path in CODE:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            attr = node.func.attr
            constructor = isinstance(node.func.value, ast.Name) and node.func.value.id == "trt"
            if attr not in methods or (constructor != methods[attr].endswith("__init__") and attr != "nptype"):
                continue
            call = methods[attr]
            seen.add(call)
            if len(node.args) != len(CALLS[call]) or node.keywords:
                wrong.append(f"{path.name}:{node.lineno} {call} with {len(node.args)} arguments")
    assert wrong == [] and seen == set(CALLS)
