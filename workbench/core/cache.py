"""Where the workbench keeps what it makes once: converted models and fetched task data ($WORKBENCH_CACHE, else the
user's cache folder). Light on purpose: fetching task data does not import torch."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_root() -> Path:
    env = os.environ.get("WORKBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("workbench"))
