import pytest

from edgecls.export.triton import write_triton_repository


def test_triton_repository_parses_with_tritons_own_schema(bundle_dir, tmp_path):
    text_format = pytest.importorskip("google.protobuf.text_format")
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")

    written = write_triton_repository(bundle_dir, tmp_path / "repo")
    assert {p.name for p in written} == {"lenet5_fp32", "lenet5_fp16", "lenet5_int8_cpu"}
    for model_dir in written:
        config = text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        assert config.name == model_dir.name and config.backend == "onnxruntime"
        assert config.max_batch_size == 64 and config.dynamic_batching.max_queue_delay_microseconds == 500
        (inp,) = config.input
        (out,) = config.output
        assert inp.name == "input" and list(inp.dims) == [3, 32, 32] and inp.data_type == model_config_pb2.TYPE_FP32
        assert out.name == "logits" and list(out.dims) == [10] and out.label_filename == "labels.txt"
        assert (model_dir / "1" / "model.onnx").stat().st_size > 0
        assert (model_dir / "labels.txt").read_text().splitlines()[0] == "airplane"
    cpu = text_format.Parse((tmp_path / "repo" / "lenet5_int8_cpu" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert cpu.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU


def test_engines_become_tensorrt_plans(bundle_dir, tmp_path):
    import shutil

    text_format = pytest.importorskip("google.protobuf.text_format")
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    bundle = tmp_path / "bundle"
    shutil.copytree(bundle_dir, bundle)
    (bundle / "model.int8.engine").write_bytes(b"plan bytes")
    written = write_triton_repository(bundle, tmp_path / "repo")
    plan_dir = next(p for p in written if p.name == "lenet5_trt_int8")
    config = text_format.Parse((plan_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.backend == "tensorrt" and (plan_dir / "1" / "model.plan").read_bytes() == b"plan bytes"
