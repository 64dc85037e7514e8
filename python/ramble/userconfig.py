"""Per-user settings of ramble: ``$XDG_CONFIG_HOME/ramble/config.json`` (default ``~/.config/ramble``).

Set once with ``ramble config set mnist-dir DIR``; read by the MNIST search
(:func:`ramble.models.mnist.locate_mnist`).  Keys are the CLI's names
(``mnist-dir``); values are strings.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ramble.errors import ConfigError

#: The keys ``ramble config`` knows, with what each holds.
KEYS: dict[str, str] = {"mnist-dir": "folder with the four official MNIST IDX files, used when neither --data-dir nor RAMBLE_MNIST_DIR is given"}


def config_path() -> Path:
    """The per-user config file (it need not exist)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join("~", ".config")
    return Path(base).expanduser() / "ramble" / "config.json"


def read_config() -> dict[str, str]:
    """The per-user settings; empty when the file does not exist.  ConfigError (one line) when it is not valid JSON."""
    p = config_path()
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read the ramble config {p} ({e}); fix or delete it") from None
    if not isinstance(data, dict):
        raise ConfigError(f"the ramble config {p} must hold a JSON object, got {type(data).__name__}")
    return {str(k): str(v) for k, v in data.items()}


def set_value(key: str, value: str) -> Path:
    """Store ``key`` = ``value`` (a folder is stored absolute); returns the config file."""
    if key not in KEYS:
        raise ConfigError(f"unknown config key {key!r}; known: {', '.join(KEYS)}")
    if key == "mnist-dir":
        value = str(Path(value).expanduser().resolve())
    data = read_config()
    data[key] = value
    p = config_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return p


def get_value(key: str) -> str | None:
    if key not in KEYS:
        raise ConfigError(f"unknown config key {key!r}; known: {', '.join(KEYS)}")
    return read_config().get(key)
