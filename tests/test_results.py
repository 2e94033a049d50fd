import json
import os

import pytest
import torch

from workbench.core.errors import WorkbenchError
from workbench.core.results import SCHEMA_VERSION, atomic_write_text, check_writable, write_result


def test_write_result_has_schema_settings_environment(tmp_path):
    path = write_result(tmp_path / "r.json", "test.kind", {"model": "m", "x": 1}, {"seed": 3})
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == SCHEMA_VERSION and doc["kind"] == "test.kind"
    assert doc["x"] == 1 and doc["settings"] == {"seed": 3}
    assert doc["environment"]["libraries"]["torch"] == torch.__version__


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    path.write_text("old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        atomic_write_text(path, "new" * 1000)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_check_writable(tmp_path):
    assert check_writable(tmp_path / "sub" / "r.json").parent.is_dir()
    with pytest.raises(WorkbenchError, match="is a directory"):
        check_writable(tmp_path)
