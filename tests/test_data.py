import gzip
import os
import pickle
import shutil

import cv2
import numpy as np
import pytest
from synthetic import write_cifar100, write_idx, write_image_folder

from edgecls.data import load_dataset
from edgecls.data.split import kfold_indices, long_tail_indices, stratified_split
from edgecls.errors import ConfigError, DatasetError, UnsafePickleError


def test_cifar10_loads_official_batch_format(cifar_root):
    train = load_dataset("cifar10", "train", cifar_root)
    test = load_dataset("cifar10", "test", cifar_root)
    assert train.images.shape == (500, 32, 32, 3) and train.images.dtype == np.uint8
    assert len(test) == 200 and train.classes[0] == "airplane" and len(train.classes) == 10
    raw = pickle.load(open(cifar_root / "cifar-10-batches-py" / "data_batch_1", "rb"), encoding="bytes")
    first = raw[b"data"][0]
    assert np.array_equal(train.images[0, 0, :3, 0], first[[0, 1, 2]])  # red channel, first row
    assert train.images[0, 0, 0, 1] == first[1024] and train.images[0, 0, 0, 2] == first[2048]


def test_data_dir_comes_from_environment(cifar_root, monkeypatch):
    monkeypatch.setenv("EDGECLS_DATA", str(cifar_root))
    assert len(load_dataset("cifar10", "test")) == 200


def test_missing_dataset_names_layout_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGECLS_DATA", raising=False)
    with pytest.raises(DatasetError, match="EDGECLS_DATA"):
        load_dataset("cifar10", "train")
    with pytest.raises(DatasetError, match="cifar-10-python.tar.gz"):
        load_dataset("cifar10", "train", tmp_path)


def test_unknown_dataset_suggests_a_name(tmp_path):
    with pytest.raises(ConfigError, match="cifar10"):
        load_dataset("cifar-10", "train", tmp_path)


class _Exploit:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_crafted_pickle_is_refused_and_runs_nothing(cifar_root, tmp_path):
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "cifar-10-batches-py").symlink_to(tmp_path / "batches")
    (tmp_path / "batches").mkdir()
    marker = tmp_path / "pwned"
    for name in ("batches.meta", "test_batch"):
        src = cifar_root / "cifar-10-batches-py" / name
        (tmp_path / "batches" / name).write_bytes(src.read_bytes())
    (tmp_path / "batches" / "test_batch").write_bytes(pickle.dumps({b"data": _Exploit(marker), b"labels": [0]}))
    with pytest.raises(UnsafePickleError, match="posix.system|os.system"):
        load_dataset("cifar10", "test", evil)
    assert not marker.exists()


def test_cifar100_fine_and_coarse(tmp_path):
    write_cifar100(tmp_path)
    fine = load_dataset("cifar100", "train", tmp_path)
    coarse = load_dataset("cifar100-coarse", "test", tmp_path)
    assert len(fine.classes) == 100 and len(coarse.classes) == 20
    assert coarse.labels.max() < 20 and len(coarse) == 100


@pytest.mark.parametrize("kind", ["fashion-mnist", "mnist"])
def test_idx_datasets(tmp_path, kind):
    write_idx(tmp_path, kind)
    train = load_dataset(kind, "train", tmp_path)
    assert train.images.shape == (200, 28, 28, 1) and len(train.classes) == 10


def test_truncated_idx_file_is_reported(tmp_path):
    write_idx(tmp_path)
    path = tmp_path / "fashion-mnist" / "t10k-images-idx3-ubyte.gz"
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(data[:-100]))
    with pytest.raises(DatasetError, match="truncated"):
        load_dataset("fashion-mnist", "test", tmp_path)


def test_image_folder(tmp_path):
    write_image_folder(tmp_path)
    train = load_dataset("folder", "train", tmp_path)
    assert train.classes == ("cat", "dog", "fish") and train.images.shape == (18, 32, 32, 3)
    resized = load_dataset("folder", "test", tmp_path, image_size=16)
    assert resized.images.shape[1:] == (16, 16, 3)


def test_stratified_split_keeps_class_proportions():
    labels = np.repeat(np.arange(4), 50)
    keep, held = stratified_split(labels, 0.2, seed=1)
    assert len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == 200
    assert np.all(np.bincount(labels[held]) == 10)


def test_long_tail_profile_and_kfold():
    labels = np.repeat(np.arange(10), 100)
    counts = np.bincount(labels[long_tail_indices(labels, 10.0, seed=0)])
    assert counts[0] == 100 and counts[-1] == 10 and np.all(np.diff(counts) <= 0)
    folds = kfold_indices(labels, 5, seed=0)
    assert len(folds) == 5 and sorted(np.concatenate([f[1] for f in folds]).tolist()) == list(range(1000))


def test_cifar_batches_repickled_by_python3_with_protocol_2_load(cifar_root, tmp_path):
    src = cifar_root / "cifar-10-batches-py"
    dst = tmp_path / "cifar-10-batches-py"
    shutil.copytree(src, dst)
    batch = pickle.loads((src / "test_batch").read_bytes(), encoding="bytes")
    (dst / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))  # bytes become _codecs.encode(..., "latin1")
    assert b"_codecs" in (dst / "test_batch").read_bytes()
    reloaded = load_dataset("cifar10", "test", tmp_path)
    assert np.array_equal(reloaded.images, load_dataset("cifar10", "test", cifar_root).images)


def test_image_folder_uses_the_runtime_geometry_and_a_disk_cache(tmp_path, monkeypatch):
    from edgecls.imaging import ImageInput, Normalization, Policy
    from edgecls.runtime.preprocess import Preprocessor

    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in ("a", "b"):
            (tmp_path / "ds" / split / name).mkdir(parents=True)
            for i in range(3):
                cv2.imwrite(
                    str(tmp_path / "ds" / split / name / f"{i}.png"), rng.integers(0, 255, (60, 90, 3), dtype=np.uint8)
                )
    with pytest.raises(DatasetError, match="not square.*--image-size"):
        load_dataset("folder", "train", tmp_path / "ds")
    data = load_dataset("folder", "test", tmp_path / "ds", image_size=20)
    assert isinstance(data.images, np.memmap) and data.images.shape == (6, 20, 20, 3)
    assert data.paths[0].endswith("a/0.png") and data.take(np.array([5])).paths[0].endswith("b/2.png")
    frame = cv2.imread(data.paths[0])  # the runtime crops the same square and reduces it the same way
    prep = Preprocessor(ImageInput(20, 3), Policy(Normalization("given", (0.0,) * 3, (1.0,) * 3)))
    assert np.array_equal(prep.to_hwc(frame).astype(np.uint8), data.images[0])
    cached = sorted((tmp_path / "cache" / "folders").glob("*.npy"))  # the decoded folder, and the subset taken above
    assert len(cached) == 2
    again = load_dataset("folder", "test", tmp_path / "ds", image_size=20)
    assert (
        np.array_equal(again.images, data.images) and sorted((tmp_path / "cache" / "folders").glob("*.npy")) == cached
    )


def test_normalization_in_training_is_the_runtime_normalization_bit_for_bit(cifar_root):
    import torch

    from edgecls.imaging import ImageInput, Normalization, Policy
    from edgecls.runtime.preprocess import Preprocessor

    data = load_dataset("cifar10", "test", cifar_root)
    norm = Normalization.fit(data.images)
    prep = Preprocessor(ImageInput(32, 3), Policy(norm))
    trained = norm.apply(torch.from_numpy(data.images).permute(0, 3, 1, 2)).numpy()
    assert np.array_equal(trained, prep.batch_from_images(data.images))


def test_a_memory_mapped_folder_splits_and_batches_from_disk(tmp_path, monkeypatch):
    import torch

    from edgecls.data.loader import BatchLoader
    from edgecls.data.split import train_val_split
    from edgecls.data.transforms import Augment
    from edgecls.imaging import Normalization

    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))
    write_image_folder(tmp_path / "ds", per_class=20)
    data = load_dataset("folder", "train", tmp_path / "ds")
    train, val = train_val_split(data, {"seed": 0, "val_fraction": 0.1})
    assert isinstance(train.images, np.memmap) and isinstance(val.images, np.memmap) and len(train) + len(val) == 60
    in_memory = train.take(np.arange(len(train)))
    in_memory = type(in_memory)(in_memory.name, np.array(in_memory.images), in_memory.labels, in_memory.classes)
    norm = Normalization.fit(in_memory.images)
    mapped = BatchLoader(train, 16, norm, Augment(4, True), shuffle=True, seed=3)
    loaded = BatchLoader(in_memory, 16, norm, Augment(4, True), shuffle=True, seed=3)
    assert mapped.images is None
    for (a, ya), (b, yb) in zip(mapped.epoch(1), loaded.epoch(1), strict=True):
        assert torch.equal(a, b) and torch.equal(ya, yb)


def _jpeg_folder(root, monkeypatch, per_class=3):
    monkeypatch.setenv("EDGECLS_CACHE", str(root / "cache"))
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            (root / "ds" / split / name).mkdir(parents=True)
            for i in range(per_class):
                cv2.imwrite(
                    str(root / "ds" / split / name / f"{i}.jpg"), rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
                )
    return root / "ds"


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda ds: [p.unlink() for p in (ds / "test" / "dog").iterdir()],
            r"class folder\(s\) \['dog'\] .* hold no images",
        ),
        (lambda ds: (ds / "test" / "bird").mkdir(), r"class folders the training split lacks: \['bird'\]"),
        (
            lambda ds: shutil.copytree(ds / "test" / "dog", ds / "test" / "wolf"),
            r"class folders the training split lacks: \['wolf'\]",
        ),
        (lambda ds: shutil.rmtree(ds / "test"), r"test not found"),
    ],
)
def test_class_folders_must_match_the_training_split_by_name(tmp_path, monkeypatch, change, message):
    ds = _jpeg_folder(tmp_path, monkeypatch)
    change(ds)
    with pytest.raises(DatasetError, match=message):
        load_dataset("folder", "test", ds)


def test_a_test_split_lacking_a_class_keeps_the_training_labels(tmp_path, monkeypatch):
    ds = _jpeg_folder(tmp_path, monkeypatch)
    (ds / "train" / "ant").mkdir()  # sorts first: the test split's labels must follow the training split's list
    cv2.imwrite(str(ds / "train" / "ant" / "0.jpg"), np.zeros((24, 24, 3), np.uint8))
    test = load_dataset("folder", "test", ds)
    assert test.classes == ("ant", "cat", "dog") and sorted(set(test.labels.tolist())) == [1, 2]


def test_bad_images_are_named_and_skipped_only_when_asked(tmp_path, monkeypatch):
    ds = _jpeg_folder(tmp_path, monkeypatch)
    cut = ds / "test" / "dog" / "1.jpg"
    cut.write_bytes(cut.read_bytes()[: int(cut.stat().st_size * 0.8)])  # OpenCV decodes it into a half-grey image
    (ds / "test" / "cat" / "9.jpg").write_bytes(b"\xff\xd8 not an image \xff\xd9")
    (ds / "test" / "cat" / "8.jpg").symlink_to("8.jpg")  # a link to itself
    with pytest.raises(DatasetError) as failure:
        load_dataset("folder", "test", ds)
    assert all(
        s in str(failure.value)
        for s in (
            "dog/1.jpg: truncated",
            "cat/9.jpg: OpenCV cannot decode it",
            "cat/8.jpg: cannot be read",
            "--skip-bad-images",
        )
    )
    with pytest.warns(UserWarning, match="left out 3 bad image.*dog/1.jpg"):
        kept = load_dataset("folder", "test", ds, skip_bad_images=True)
    assert sorted(p.split("/test/")[1] for p in kept.paths) == [
        "cat/0.jpg",
        "cat/1.jpg",
        "cat/2.jpg",
        "dog/0.jpg",
        "dog/2.jpg",
    ]
    assert kept.labels.tolist() == [0, 0, 0, 1, 1]
    with pytest.raises(DatasetError, match="truncated"):  # the cached decode remembers the bad files
        load_dataset("folder", "test", ds)


def test_an_undecodable_first_image_without_image_size_is_named(tmp_path, monkeypatch):
    ds = _jpeg_folder(tmp_path, monkeypatch)
    (ds / "train" / "cat" / "0.jpg").write_bytes(b"\xff\xd8 garbage \xff\xd9")
    with pytest.raises(DatasetError, match=r"cat/0.jpg: OpenCV cannot decode it"):
        load_dataset("folder", "train", ds)


def test_an_idx_file_declaring_more_than_it_holds_is_refused_before_reading(tmp_path):
    """4 MB of gzip declaring 1.2 M images reached 1.9 GB before a ValueError; the header is checked against the size
    the gzip trailer records, so nothing near that is read or allocated."""
    import resource
    import struct

    write_idx(tmp_path)
    path = tmp_path / "fashion-mnist" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(struct.pack(">BBBBIII", 0, 0, 8, 3, 1_200_000, 28, 28) + bytes(4 << 20)))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DatasetError, match="header promises 940800000 bytes, file holds 4194304"):
        load_dataset("fashion-mnist", "test", tmp_path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: no 940 MB allocation
    path.unlink()  # an uncompressed file declaring 2^40 × 784 bytes
    path.with_suffix("").write_bytes(struct.pack(">BBBBIIII", 0, 0, 8, 4, 1 << 20, 1 << 20, 28, 28))
    with pytest.raises(DatasetError, match="beyond what edgecls reads"):
        load_dataset("fashion-mnist", "test", tmp_path)


def test_a_truncated_gzip_dataset_is_a_clear_error(tmp_path):
    write_idx(tmp_path)
    path = tmp_path / "fashion-mnist" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-2000])
    with pytest.raises(DatasetError, match="damaged or truncated|truncated"):
        load_dataset("fashion-mnist", "test", tmp_path)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".webp"])
def test_image_headers_are_read_before_decoding(suffix):
    from edgecls.data.image_header import declared_size

    ok, data = cv2.imencode(suffix, np.zeros((23, 37, 3), np.uint8))
    assert ok and declared_size(data.tobytes()) == (37, 23)


def test_an_image_declaring_a_bomb_of_pixels_is_refused_by_name(tmp_path, monkeypatch):
    """A PNG declaring 20000×20000 in an image folder was decoded (2.45 GB) and scored as a test image."""
    import struct
    import zlib

    write_image_folder(tmp_path)
    bomb = tmp_path / "test" / "cat" / "bomb.png"
    png = bytearray((tmp_path / "test" / "cat").glob("*.png").__next__().read_bytes())
    png[16:24] = struct.pack(">II", 20000, 20000)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))  # the IHDR chunk's CRC over its new contents
    bomb.write_bytes(bytes(png))
    with pytest.raises(DatasetError, match=r"bomb.png: declares 20000×20000 pixels"):
        load_dataset("folder", "test", tmp_path)
