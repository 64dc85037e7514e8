"""MNIST from the four official IDX files, checksummed, normalised, sliced.

Where the data is looked for, first match wins:

1. the ``data_dir`` argument (the CLI's ``--data-dir``);
2. the environment variable ``RAMBLE_MNIST_DIR``;
3. the per-user setting ``mnist-dir`` (``ramble config set mnist-dir DIR``,
   stored in ``~/.config/ramble/config.json``);
4. ``shared/mnist`` beside the ramble checkout this package was installed
   from (``<checkout>/../shared/mnist``, found from the package's location,
   not from the current folder), if it exists;
5. the download cache ``$XDG_CACHE_HOME/ramble/mnist`` (default
   ``~/.cache/ramble/mnist``) if an earlier ``download=True`` filled it;
6. with ``download=True`` only: torchvision's ``MNIST(root, download=True)``
   into that cache (or into ``data_dir`` / ``RAMBLE_MNIST_DIR`` when given).

A folder may hold the files directly or in torchvision's ``<root>/MNIST/raw/``
layout, as ``.gz`` (preferred; checked against the official gz MD5 and
SHA-256) or decompressed (checked against the MD5 of the decompressed data).
A folder with a ``SUBSET.json`` manifest (like ``tests/fixtures/mnist``) holds
the first images of the official files; its files are checked against the
manifest's SHA-256 and it serves only as many images as it holds.

Anything missing or corrupt raises :class:`ramble.errors.DataError` with one
line saying what was looked for and how to get the data.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ramble.errors import ConfigError, DataError

MEAN = 0.1307
"""Mean pixel value / 255 of the 60,000 training images (the usual constant)."""
STD = 0.3081
"""Standard deviation of pixel value / 255 over the training images."""

N_TRAIN = 60_000
N_TEST = 10_000
ROWS = COLS = 28

ENV_VAR = "RAMBLE_MNIST_DIR"
SUBSET_MANIFEST = "SUBSET.json"
SUBSET_FORMAT = "ramble-mnist-subset"

# Role -> official file name (without .gz), as served by yann.lecun.com.
FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# Official checksums: gz md5, md5 of the decompressed IDX data, gz sha256, gz bytes.
OFFICIAL: dict[str, dict[str, Any]] = {
    "train-images-idx3-ubyte": {
        "md5_gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "md5_raw": "6bbc9ace898e44ae57da46a324031adb",
        "sha256_gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "bytes_gz": 9_912_422,
    },
    "train-labels-idx1-ubyte": {
        "md5_gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "md5_raw": "a25bea736e30d166cdddb491f175f624",
        "sha256_gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "bytes_gz": 28_881,
    },
    "t10k-images-idx3-ubyte": {
        "md5_gz": "9fb629c4189551a2d022fa330f9573f3",
        "md5_raw": "2646ac647ad5339dbf082846283269ea",
        "sha256_gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "bytes_gz": 1_648_877,
    },
    "t10k-labels-idx1-ubyte": {
        "md5_gz": "ec29112dd5afa0611ce80d1b7f02629c",
        "md5_raw": "27ae3e4e09519cfbb04c329615203637",
        "sha256_gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        "bytes_gz": 4_542,
    },
}

_IMAGES_MAGIC = 2051  # IDX: unsigned byte, 3 dimensions
_LABELS_MAGIC = 2049  # IDX: unsigned byte, 1 dimension

Reader = Callable[[int], bytes]
"""Returns the first k decompressed bytes of a verified file."""

_HOW_LOCAL = (
    f"pass --data-dir DIR or set {ENV_VAR} to a folder holding the four official "
    "MNIST IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)"
)
HOW_TO_GET = _HOW_LOCAL + ", or use --download on a machine with internet"
"""The advice every DataError ends with."""


@dataclass
class MnistData:
    """A training slice and a test slice of MNIST, ready for a network.

    ``train_x``: float32, shape (n, 1, 28, 28), ``(pixel/255 - MEAN) / STD``;
    ``train_y``: int64, shape (n,), in 0..9; likewise ``test_x``, ``test_y``.
    ``source`` records by reference where the data came from (folder, file
    names, the checksums as verified, ``train_indices``/``test_indices`` as
    ``"start:stop"`` slices of the official files); it holds only str, int,
    float and nested dicts, so it can go into JSON or HDF5 attributes.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: dict[str, Any] = field(default_factory=dict)


def cache_dir() -> Path:
    """Where ``download=True`` puts MNIST: ``$XDG_CACHE_HOME/ramble/mnist`` (default ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(base).expanduser() / "ramble" / "mnist"


def _check_size(name: str, value: Any, hi: int) -> int:
    # bool is an int subclass; True as a size is surely a mistake.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= hi:
        raise ConfigError(f"{name}={value!r} is out of range: must be an integer in [1, {hi}]")
    return int(value)


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    train_size: int = 100,
    test_size: int | None = None,
    download: bool = False,
) -> MnistData:
    """Load the first ``train_size`` training and first ``test_size`` test images.

    ``train_size`` in [1, 60000] takes the first images in the official order
    (100 gives MNIST-100); ``test_size`` in [1, 10000], or None for every test
    image the folder holds (10,000 for the official files).  Raises
    :class:`ConfigError` for sizes out of range and :class:`DataError` for
    missing, corrupt or too small data.
    """
    train_size = _check_size("train_size", train_size, N_TRAIN)
    if test_size is not None:
        test_size = _check_size("test_size", test_size, N_TEST)
    folder = find_mnist_dir(data_dir, download=download)
    return load_from_folder(folder, train_size, test_size)


def checkout_shared_dir() -> Path:
    """``<checkout>/../shared/mnist`` for the checkout holding this package (``<checkout>/python/ramble``)."""
    return Path(__file__).resolve().parents[3].parent / "shared" / "mnist"


def find_mnist_dir(data_dir: str | os.PathLike[str] | None = None, download: bool = False) -> Path:
    """The folder that holds the four IDX files, following the module's search order."""
    return locate_mnist(data_dir, download)[0]


def locate_mnist(data_dir: str | os.PathLike[str] | None = None, download: bool = False) -> tuple[Path, str]:
    """(folder with the four IDX files, which rule of the search order found it, in words).

    An explicit ``data_dir``, ``RAMBLE_MNIST_DIR`` or configured ``mnist-dir``
    is final: when it lacks the files this raises (or, with ``download``,
    downloads into it) rather than silently using another copy.
    """
    from ramble.userconfig import config_path, get_value

    explicit: tuple[str, Path] | None = None
    if data_dir is not None:
        explicit = ("--data-dir", Path(data_dir).expanduser())
    elif os.environ.get(ENV_VAR):
        explicit = (ENV_VAR, Path(os.environ[ENV_VAR]).expanduser())
    elif get_value("mnist-dir"):
        explicit = (f"mnist-dir in {config_path()}", Path(str(get_value("mnist-dir"))).expanduser())

    if explicit is not None:
        what, root = explicit
        folder = _files_folder(root)
        if folder is not None:
            return folder, what
        if download:
            return _download(root), f"{what}, downloaded"
        found = "does not exist" if not root.exists() else (
            f"holds no {FILES['train_images']}.gz (nor the decompressed file, nor MNIST/raw/ inside it)")
        raise DataError(f"MNIST not found: {what} {root} {found}; looked for {FILES['train_images']}.gz; {HOW_TO_GET}")

    shared = checkout_shared_dir()
    for root, what in ((shared, "beside the ramble checkout"), (cache_dir(), "the download cache")):
        if root.is_dir():
            folder = _files_folder(root)
            if folder is not None:
                if download and root == cache_dir() and not _complete(folder):
                    break  # an interrupted earlier download: fetch again
                return folder, what
    if download:
        return _download(cache_dir()), "downloaded into the cache"
    raise DataError(
        f"MNIST not found: no --data-dir given, {ENV_VAR} unset, no mnist-dir configured (ramble config set mnist-dir DIR), and neither {shared} "
        f"nor the download cache {cache_dir()} holds {FILES['train_images']}.gz; {HOW_TO_GET}"
    )


def _files_folder(root: Path) -> Path | None:
    """``root`` or ``root/MNIST/raw`` if it holds the training images (gz or not)."""
    for folder in (root, root / "MNIST" / "raw"):
        name = FILES["train_images"]
        if (folder / (name + ".gz")).is_file() or (folder / name).is_file():
            return folder
    return None


def _complete(folder: Path) -> bool:
    """True if all four files are in ``folder`` (each gz or decompressed)."""
    return all((folder / (n + ".gz")).is_file() or (folder / n).is_file() for n in FILES.values())


def _download(root: Path) -> Path:
    """Fetch MNIST with torchvision into ``root/MNIST/raw``; torchvision checks the gz MD5s."""
    try:
        from torchvision.datasets import MNIST  # lazy: torchvision is optional
    except ImportError:
        raise DataError(
            f"--download needs torchvision, which is not installed (pip install torchvision, "
            f"or pip install 'ramble[vision]'); otherwise {_HOW_LOCAL}"
        ) from None
    try:
        root.mkdir(parents=True, exist_ok=True)
        for train in (True, False):
            MNIST(str(root), train=train, download=True)
    except Exception as exc:  # network, disk, checksum: all end in the same advice
        msg = " ".join(str(exc).split())  # keep it one line
        raise DataError(f"downloading MNIST into {root} failed ({type(exc).__name__}: {msg}); {HOW_TO_GET}") from exc
    folder = _files_folder(root)
    if folder is None:
        raise DataError(f"downloading MNIST into {root} left no {FILES['train_images']}.gz there; {HOW_TO_GET}")
    return folder


def load_from_folder(folder: Path, train_size: int, test_size: int | None) -> MnistData:
    """Read, verify and slice the four files in ``folder`` (a full or subset folder)."""
    train_size = _check_size("train_size", train_size, N_TRAIN)
    if test_size is not None:
        test_size = _check_size("test_size", test_size, N_TEST)
    folder = Path(folder)
    manifest = _read_manifest(folder)
    counts = {role: (N_TRAIN if role.startswith("train") else N_TEST) for role in FILES}
    if manifest is not None:
        counts = {role: int(manifest["files"][FILES[role] + ".gz"]["count"]) for role in FILES}
    n_test = counts["test_images"] if test_size is None else test_size
    for role, n in (("train_images", train_size), ("test_images", n_test)):
        if n > counts[role]:
            arg = "train_size" if role.startswith("train") else "test_size"
            raise DataError(
                f"{arg}={n} but the MNIST subset in {folder} ({SUBSET_MANIFEST}) holds only the first "
                f"{counts[role]} of {FILES[role]}; {HOW_TO_GET}"
            )

    files: dict[str, dict[str, Any]] = {}
    arrays: dict[str, np.ndarray] = {}
    for role, name in FILES.items():
        n = train_size if role.startswith("train") else n_test
        entry = None if manifest is None else manifest["files"][name + ".gz"]
        read, record = _read_verified(folder, name, entry)
        arrays[role] = _parse_idx(read, folder / record["file"], role, counts[role], n)
        files[role] = record

    source: dict[str, Any] = {
        "dataset": "MNIST",
        "kind": "official" if manifest is None else "subset",
        "folder": str(folder.resolve()),
        "files": files,
        "train_indices": f"0:{train_size}",
        "test_indices": f"0:{n_test}",
        "normalisation": {"mean": MEAN, "std": STD, "scale": 255.0},
    }
    return MnistData(
        train_x=_normalise(arrays["train_images"]),
        train_y=torch.from_numpy(arrays["train_labels"].astype(np.int64)),
        test_x=_normalise(arrays["test_images"]),
        test_y=torch.from_numpy(arrays["test_labels"].astype(np.int64)),
        source=source,
    )


def _normalise(images: np.ndarray) -> torch.Tensor:
    """uint8 (n, 28, 28) -> float32 (n, 1, 28, 28), ``(x/255 - MEAN)/STD``."""
    x = torch.from_numpy(images.astype(np.float32)).unsqueeze(1)
    return (x / 255.0 - MEAN) / STD


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / SUBSET_MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        if manifest.get("format") != SUBSET_FORMAT:
            raise ValueError(f"format is {manifest.get('format')!r}, not {SUBSET_FORMAT!r}")
        for name in FILES.values():
            entry = manifest["files"][name + ".gz"]
            official = OFFICIAL[name]
            # The subset must claim the official file as its source, or it is not MNIST.
            if entry["source_md5_gz"] != official["md5_gz"] or entry["source_sha256_gz"] != official["sha256_gz"]:
                raise ValueError(f"{name}.gz does not name the official file's checksums as its source")
            if entry["slice"] != f"0:{int(entry['count'])}":
                raise ValueError(f"{name}.gz slice {entry['slice']!r} is not the first {entry['count']} items")
            str(entry["sha256"]), str(entry["md5_raw"])
    except (ValueError, KeyError, TypeError) as exc:
        msg = " ".join(str(exc).split())
        raise DataError(
            f"MNIST subset manifest {path} is unreadable or incomplete ({type(exc).__name__}: {msg}); "
            f"regenerate it with tests/fixtures/mnist/make_fixture.py, or {HOW_TO_GET}"
        ) from None
    return manifest


def _digest(data: bytes, algo: str) -> str:
    return hashlib.new(algo, data).hexdigest()


def _read_verified(folder: Path, name: str, entry: dict[str, Any] | None) -> tuple[Reader, dict[str, Any]]:
    """A reader of the decompressed bytes of ``name`` in ``folder`` (gz preferred) and what was verified.

    ``entry`` is the subset manifest's record for the file, or None for the
    official files.  The whole file is checksummed; the reader then
    decompresses only the prefix it is asked for (MNIST-100 needs 78 kB of the
    47 MB of training images).
    """
    gz_path, raw_path = folder / (name + ".gz"), folder / name
    if gz_path.is_file():
        blob = gz_path.read_bytes()
        if entry is None:
            checks = {"md5_gz": (_digest(blob, "md5"), OFFICIAL[name]["md5_gz"]),
                      "sha256_gz": (_digest(blob, "sha256"), OFFICIAL[name]["sha256_gz"])}
        else:
            checks = {"sha256_gz": (_digest(blob, "sha256"), entry["sha256"])}
        _raise_on_mismatch(gz_path, checks)
        record = {"file": gz_path.name, **{k: v[0] for k, v in checks.items()}}

        def read(k: int) -> bytes:
            with gzip.GzipFile(fileobj=io.BytesIO(blob)) as f:
                return f.read(k)
    elif raw_path.is_file():
        data = raw_path.read_bytes()
        expected = OFFICIAL[name]["md5_raw"] if entry is None else entry["md5_raw"]
        checks = {"md5_raw": (_digest(data, "md5"), expected)}
        _raise_on_mismatch(raw_path, checks)
        record = {"file": raw_path.name, "md5_raw": checks["md5_raw"][0]}

        def read(k: int) -> bytes:
            return data[:k]
    else:
        raise DataError(f"MNIST file missing: {gz_path} (or {raw_path.name} decompressed); {HOW_TO_GET}")
    if entry is not None:
        record.update({k: entry[k] for k in ("slice", "source_md5_gz", "source_sha256_gz")})
    return read, record


def _raise_on_mismatch(path: Path, checks: dict[str, tuple[str, str]]) -> None:
    for kind, (got, want) in checks.items():
        if got != want:
            raise DataError(
                f"MNIST file {path} is corrupt or not the expected file: {kind} {got}, expected {want}; "
                f"replace it ({HOW_TO_GET})"
            )


def _parse_idx(read: Reader, path: Path, role: str, count: int, n: int) -> np.ndarray:
    """First ``n`` items of a verified IDX file: uint8 (n, 28, 28) images or (n,) labels.

    ``count`` is the number of items the header must announce.
    """
    images = role.endswith("images")
    header = 16 if images else 8
    item = ROWS * COLS if images else 1
    want = [_IMAGES_MAGIC, count, ROWS, COLS] if images else [_LABELS_MAGIC, count]
    data = read(header + n * item)
    got = [int(v) for v in np.frombuffer(data[:header], dtype=">u4")] if len(data) >= header else []
    if got != want or len(data) != header + n * item:
        raise DataError(
            f"MNIST file {path} has IDX header {got} and {len(data)} bytes for {n} items, expected header "
            f"{want} and {header + n * item} bytes; {HOW_TO_GET}"
        )
    out = np.frombuffer(data, dtype=np.uint8, offset=header)
    if images:
        return out.reshape(n, ROWS, COLS)
    if out.size and out.max() > 9:
        raise DataError(f"MNIST file {path} holds a label {int(out.max())} outside 0..9; {HOW_TO_GET}")
    return out


def write_idx_gz(path: Path, array: np.ndarray) -> None:
    """Write uint8 ``array`` ((n, 28, 28) images or (n,) labels) as a reproducible IDX .gz.

    The gzip header carries no file name and mtime 0, so equal arrays give
    byte-identical files (for one zlib version).
    """
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = _IMAGES_MAGIC if array.ndim == 3 else _LABELS_MAGIC
    header = np.array([magic, *array.shape], dtype=">u4").tobytes()
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as f:
        f.write(header + array.tobytes())
    path.write_bytes(buf.getvalue())
