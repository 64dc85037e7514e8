"""MNIST loading: checksums, folder resolution, slicing, normalisation, errors."""

from __future__ import annotations

import gzip
import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from ramble.errors import ConfigError, DataError
from ramble.models import mnist
from ramble.models.mnist import load_mnist

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "mnist"
FULL = Path(__file__).resolve().parents[2] / "shared" / "mnist"
HAVE_FULL = all((FULL / (n + ".gz")).is_file() for n in mnist.FILES.values())
needs_full = pytest.mark.skipif(not HAVE_FULL, reason=f"full official MNIST not found at {FULL}")

FIRST_LABELS = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No test sees the developer's RAMBLE_MNIST_DIR, configured mnist-dir, checkout's shared folder or download cache."""
    monkeypatch.delenv(mnist.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    _fake_checkout(monkeypatch, tmp_path / "nowhere" / "checkout")


def _fake_checkout(monkeypatch, checkout: Path) -> None:
    """Make the package believe it was installed from ``checkout`` (``checkout/python/ramble/models/mnist.py``)."""
    monkeypatch.setattr(mnist, "__file__", str(checkout / "python" / "ramble" / "models" / "mnist.py"))


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    return msg


def _copy_fixture(dst: Path) -> Path:
    # copyfile, not copy2: the copies must be writable even if the originals are not.
    shutil.copytree(FIXTURE, dst, ignore=shutil.ignore_patterns("*.py", "__pycache__"), copy_function=shutil.copyfile)
    return dst


def _pixels(x: torch.Tensor) -> np.ndarray:
    """Undo the normalisation: float (n,1,28,28) -> uint8 pixel values (n,28,28)."""
    return np.rint(((x * mnist.STD + mnist.MEAN) * 255).squeeze(1).numpy()).astype(np.uint8)


# --------------------------------------------------------------------------- the committed fixture


def test_fixture_loads_with_verified_checksums():
    data = load_mnist(FIXTURE)
    assert data.train_x.shape == (100, 1, 28, 28) and data.train_x.dtype == torch.float32
    assert data.train_y.shape == (100,) and data.train_y.dtype == torch.int64
    assert data.test_x.shape == (1000, 1, 28, 28) and data.test_y.shape == (1000,)
    assert data.train_y[:10].tolist() == FIRST_LABELS
    src = data.source
    assert src["kind"] == "subset" and src["train_indices"] == "0:100" and src["test_indices"] == "0:1000"
    manifest = json.loads((FIXTURE / "SUBSET.json").read_text())
    for role, name in mnist.FILES.items():
        rec, entry = src["files"][role], manifest["files"][name + ".gz"]
        assert rec["file"] == name + ".gz"
        assert rec["sha256_gz"] == entry["sha256"]
        assert rec["source_md5_gz"] == mnist.OFFICIAL[name]["md5_gz"]
    json.dumps(src)  # the provenance record must be serialisable


def test_fixture_manifest_matches_files():
    """SUBSET.json's sha256 and slice agree with the committed files themselves."""
    import hashlib

    manifest = json.loads((FIXTURE / "SUBSET.json").read_text())
    for name in mnist.FILES.values():
        entry = manifest["files"][name + ".gz"]
        blob = (FIXTURE / (name + ".gz")).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == entry["sha256"]
        raw = gzip.decompress(blob)
        assert hashlib.md5(raw).hexdigest() == entry["md5_raw"]
        assert int.from_bytes(raw[4:8], "big") == entry["count"]


def test_normalisation_and_pixels():
    data = load_mnist(FIXTURE, train_size=5, test_size=3)
    pix = (data.train_x * mnist.STD + mnist.MEAN) * 255
    assert torch.allclose(pix, pix.round(), atol=1e-3)  # exactly the byte values, rescaled
    assert float(pix.min()) > -1e-3 and float(pix.max()) < 255 + 1e-3
    # Row 5 of image 0 holds these values (README of the official copy).
    row = _pixels(data.train_x)[0, 5].tolist()
    assert row[12:24] == [3, 18, 18, 18, 126, 136, 175, 26, 166, 255, 247, 127]


def test_sizes_take_the_first_images():
    small = load_mnist(FIXTURE, train_size=10, test_size=7)
    big = load_mnist(FIXTURE)
    assert torch.equal(small.train_x, big.train_x[:10]) and torch.equal(small.train_y, big.train_y[:10])
    assert torch.equal(small.test_x, big.test_x[:7]) and torch.equal(small.test_y, big.test_y[:7])
    assert small.source["train_indices"] == "0:10" and small.source["test_indices"] == "0:7"


@pytest.mark.parametrize("kwargs, named", [
    ({"train_size": 60001}, "train_size=60001"),
    ({"train_size": 0}, "train_size=0"),
    ({"train_size": True}, "train_size=True"),
    ({"train_size": 10.0}, "train_size=10.0"),
    ({"test_size": 10001}, "test_size=10001"),
    ({"test_size": 0}, "test_size=0"),
])
def test_sizes_out_of_range(kwargs, named, tmp_path):
    # The range check comes before any disk access: a missing folder must not mask it.
    with pytest.raises(ConfigError) as exc:
        load_mnist(tmp_path / "nowhere", **kwargs)
    msg = _one_line(exc)
    assert named in msg
    assert ("[1, 60000]" if "train" in named else "[1, 10000]") in msg


def test_subset_refuses_more_than_it_holds():
    with pytest.raises(DataError) as exc:
        load_mnist(FIXTURE, train_size=101)
    msg = _one_line(exc)
    assert "train_size=101" in msg and "first 100" in msg and "--data-dir" in msg
    with pytest.raises(DataError) as exc:
        load_mnist(FIXTURE, test_size=1001)
    assert "first 1000" in _one_line(exc)


# --------------------------------------------------------------------------- corrupt and missing data


def test_corrupt_copy_raises_one_line(tmp_path):
    folder = _copy_fixture(tmp_path / "mnist")
    path = folder / "train-images-idx3-ubyte.gz"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError) as exc:
        load_mnist(folder)
    msg = _one_line(exc)
    manifest = json.loads((FIXTURE / "SUBSET.json").read_text())
    assert str(path) in msg
    assert manifest["files"]["train-images-idx3-ubyte.gz"]["sha256"] in msg
    assert "--data-dir" in msg and "--download" in msg


def test_broken_manifest_raises(tmp_path):
    folder = _copy_fixture(tmp_path / "mnist")
    (folder / "SUBSET.json").write_text("{not json")
    with pytest.raises(DataError) as exc:
        load_mnist(folder)
    assert "SUBSET.json" in _one_line(exc)
    # A manifest claiming a non-official source is refused too.
    manifest = json.loads((FIXTURE / "SUBSET.json").read_text())
    manifest["files"]["train-labels-idx1-ubyte.gz"]["source_md5_gz"] = "0" * 32
    (folder / "SUBSET.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError) as exc:
        load_mnist(folder)
    assert "official" in _one_line(exc)


def test_missing_folder_raises_one_line(tmp_path):
    missing = tmp_path / "no-such-dir"
    with pytest.raises(DataError) as exc:
        load_mnist(missing)
    msg = _one_line(exc)
    assert str(missing) in msg and "train-images-idx3-ubyte.gz" in msg
    assert "--data-dir" in msg and mnist.ENV_VAR in msg and "--download" in msg


def test_missing_file_raises(tmp_path):
    folder = _copy_fixture(tmp_path / "mnist")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as exc:
        load_mnist(folder)
    assert "t10k-labels-idx1-ubyte.gz" in _one_line(exc)


# --------------------------------------------------------------------------- where the data is looked for


def test_env_var_is_used(monkeypatch, tmp_path):
    monkeypatch.setenv(mnist.ENV_VAR, str(FIXTURE))
    monkeypatch.chdir(tmp_path)
    assert load_mnist(train_size=3).source["folder"] == str(FIXTURE)
    monkeypatch.setenv(mnist.ENV_VAR, str(tmp_path / "gone"))
    with pytest.raises(DataError) as exc:
        load_mnist()
    assert mnist.ENV_VAR in _one_line(exc)


def test_explicit_dir_beats_env(monkeypatch, tmp_path):
    monkeypatch.setenv(mnist.ENV_VAR, str(tmp_path / "gone"))
    assert load_mnist(FIXTURE, train_size=3).source["kind"] == "subset"


def test_shared_folder_beside_the_checkout_from_any_folder(monkeypatch, tmp_path):
    _copy_fixture(tmp_path / "shared" / "mnist")
    _fake_checkout(monkeypatch, tmp_path / "main")
    elsewhere = tmp_path / "far" / "away"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    folder, how = mnist.locate_mnist()
    assert folder == (tmp_path / "shared" / "mnist").resolve() and "checkout" in how
    assert load_mnist(train_size=3).source["folder"] == str(folder)


def test_shared_folder_relative_to_cwd_is_not_used(monkeypatch, tmp_path):
    _copy_fixture(tmp_path / "shared" / "mnist")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    with pytest.raises(DataError):
        load_mnist(train_size=3)


def test_configured_folder_is_used_from_anywhere(monkeypatch, tmp_path):
    from ramble.userconfig import config_path, set_value

    set_value("mnist-dir", str(FIXTURE))
    assert config_path().is_relative_to(tmp_path / "xdg-config")
    monkeypatch.chdir(tmp_path)
    folder, how = mnist.locate_mnist()
    assert folder == FIXTURE and "mnist-dir" in how
    monkeypatch.setenv(mnist.ENV_VAR, str(tmp_path / "gone"))  # the environment variable comes first
    with pytest.raises(DataError) as exc:
        load_mnist()
    assert mnist.ENV_VAR in _one_line(exc)


def test_configured_folder_missing_is_an_error(tmp_path):
    from ramble.userconfig import set_value

    set_value("mnist-dir", str(tmp_path / "gone"))
    with pytest.raises(DataError) as exc:
        load_mnist()
    assert "mnist-dir" in _one_line(exc) and "does not exist" in _one_line(exc)


def test_nothing_found_names_every_place(monkeypatch, tmp_path):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    with pytest.raises(DataError) as exc:
        load_mnist()
    msg = _one_line(exc)
    assert str(mnist.checkout_shared_dir()) in msg and str(mnist.cache_dir()) in msg
    assert "--data-dir" in msg and mnist.ENV_VAR in msg and "--download" in msg and "mnist-dir" in msg


def test_torchvision_layout(tmp_path):
    _copy_fixture(tmp_path / "root" / "MNIST" / "raw")
    data = load_mnist(tmp_path / "root", train_size=4)
    assert data.train_y.tolist() == FIRST_LABELS[:4]
    assert data.source["folder"].endswith(str(Path("MNIST") / "raw"))


def test_uncompressed_files(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    shutil.copy(FIXTURE / "SUBSET.json", folder)
    for name in mnist.FILES.values():
        (folder / name).write_bytes(gzip.decompress((FIXTURE / (name + ".gz")).read_bytes()))
    data, ref = load_mnist(folder), load_mnist(FIXTURE)
    assert torch.equal(data.train_x, ref.train_x) and torch.equal(data.test_y, ref.test_y)
    assert "md5_raw" in data.source["files"]["train_images"]
    path = folder / "train-labels-idx1-ubyte"
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0x02
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError) as exc:
        load_mnist(folder)
    assert "md5_raw" in _one_line(exc)


def test_download_without_torchvision(monkeypatch, tmp_path):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes `import torchvision...` fail
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    with pytest.raises(DataError) as exc:
        load_mnist(download=True)
    msg = _one_line(exc)
    assert "torchvision" in msg and "not installed" in msg and "--data-dir" in msg


def test_download_goes_through_torchvision_into_cache(monkeypatch, tmp_path):
    """A stand-in torchvision MNIST that 'downloads' the fixture; checks the wiring, not the network."""
    calls = []

    class FakeMNIST:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            raw = Path(root) / "MNIST" / "raw"
            raw.mkdir(parents=True, exist_ok=True)
            for f in FIXTURE.glob("*.*"):  # fill in what is missing, as a real download would
                if f.suffix != ".py" and not (raw / f.name).exists():
                    shutil.copyfile(f, raw / f.name)

    fake = types.ModuleType("torchvision.datasets")
    fake.MNIST = FakeMNIST
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    monkeypatch.setitem(sys.modules, "torchvision.datasets", fake)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    data = load_mnist(download=True, train_size=5)
    assert [c[1:] for c in calls] == [(True, True), (False, True)]
    assert calls[0][0] == str(mnist.cache_dir())
    assert data.source["folder"] == str((mnist.cache_dir() / "MNIST" / "raw").resolve())
    # The next run finds the cache without downloading again.
    calls.clear()
    load_mnist(train_size=5)
    assert calls == []
    # An interrupted download (a file missing from the cache) is fetched again with download=True.
    raw = mnist.cache_dir() / "MNIST" / "raw"
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as exc:
        load_mnist(train_size=5)  # without download the missing file is reported
    assert "t10k-labels-idx1-ubyte.gz" in _one_line(exc)
    assert load_mnist(download=True, train_size=5).test_y.shape == (1000,)
    assert len(calls) == 2


# --------------------------------------------------------------------------- the full official files


@needs_full
def test_full_files_verified_and_first_labels():
    data = load_mnist(FULL, train_size=100)
    assert data.source["kind"] == "official"
    assert data.test_x.shape == (10_000, 1, 28, 28) and data.source["test_indices"] == "0:10000"
    for role, name in mnist.FILES.items():
        rec = data.source["files"][role]
        assert rec["md5_gz"] == mnist.OFFICIAL[name]["md5_gz"]
        assert rec["sha256_gz"] == mnist.OFFICIAL[name]["sha256_gz"]
    assert data.train_y[:10].tolist() == FIRST_LABELS


@needs_full
def test_fixture_equals_first_images_of_full_files():
    full, fix = load_mnist(FULL, train_size=100, test_size=1000), load_mnist(FIXTURE)
    assert torch.equal(full.train_x, fix.train_x) and torch.equal(full.train_y, fix.train_y)
    assert torch.equal(full.test_x, fix.test_x) and torch.equal(full.test_y, fix.test_y)


@needs_full
def test_full_training_set_statistics():
    data = load_mnist(FULL, train_size=60_000, test_size=1)
    counts = torch.bincount(data.train_y, minlength=10).tolist()
    assert counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert abs(float(data.train_x.mean())) < 1e-3 and abs(float(data.train_x.std()) - 1) < 1e-3


@needs_full
def test_corrupt_official_copy(tmp_path):
    folder = tmp_path / "mnist"
    shutil.copytree(FULL, folder, ignore=shutil.ignore_patterns("README*"), copy_function=shutil.copyfile)
    path = folder / "train-labels-idx1-ubyte.gz"
    blob = bytearray(path.read_bytes())
    blob[100] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError) as exc:
        load_mnist(folder)
    msg = _one_line(exc)
    assert str(path) in msg and mnist.OFFICIAL["train-labels-idx1-ubyte"]["md5_gz"] in msg
