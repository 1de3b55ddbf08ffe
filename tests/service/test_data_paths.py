"""Data roots: what a spec may read, and that every path field of the spec is confined."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cringe_core.spec import json_schema
from service.data_paths import DATA_FILE_KEYS, RUN_FOLDER_KEYS, locate
from service.errors import DatasetNotFound, DatasetPathNotAllowed
from service.validation import known_kinds


def test_relative_path_found_in_second_root(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (second / "pairs.jsonl").write_text("{}\n")
    assert locate("pairs.jsonl", [first, second], "/p") == second / "pairs.jsonl"


def test_dotdot_inside_root_allowed(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "pairs.jsonl").write_text("{}\n")
    assert locate("sub/../pairs.jsonl", [tmp_path], "/p") == tmp_path / "pairs.jsonl"


def test_link_inside_root_allowed(tmp_path: Path) -> None:
    (tmp_path / "real.jsonl").write_text("{}\n")
    (tmp_path / "alias.jsonl").symlink_to(tmp_path / "real.jsonl")
    assert locate("alias.jsonl", [tmp_path], "/p") == tmp_path / "real.jsonl"


def test_linked_folder_escape_rejected(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "x.jsonl").write_text("{}\n")
    (root / "door").symlink_to(outside)
    with pytest.raises(DatasetPathNotAllowed, match="symbolic link"):
        locate("door/x.jsonl", [root], "/p")


def test_sibling_prefix_is_outside(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (tmp_path / "data-private").mkdir()
    (tmp_path / "data-private" / "x.jsonl").write_text("{}\n")
    with pytest.raises(DatasetPathNotAllowed):
        locate(str(tmp_path / "data-private" / "x.jsonl"), [root], "/p")


def test_no_roots_rejects_everything(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFound, match="none configured"):
        locate("x.jsonl", [], "/p")


def _string_fields(node: Any, key: str = "") -> list[tuple[str, str]]:
    """(field name, description) of every property in the schema that is a string."""
    found = []
    if isinstance(node, dict):
        for name, prop in node.get("properties", {}).items():
            if isinstance(prop, dict):
                found.append((name, str(prop.get("description", ""))))
        for value in node.values():
            found.extend(_string_fields(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_string_fields(value))
    return found


def test_every_path_field_is_confined() -> None:
    # A spec field described as a file, folder or path must be checked against the roots:
    # listed by key, or the `name` of a model reference (an object with `revision`).
    covered = set(DATA_FILE_KEYS) | set(RUN_FOLDER_KEYS) | {"name", "revision"}
    described = ("file", "folder", "directory")
    named = ("path", "dir", "folder", "file")
    unconfined = {
        name for name, description in _string_fields(json_schema())
        if (any(word in description.lower() for word in described)
            or any(word in name.lower() for word in named))
        and name not in covered
    }
    assert unconfined == set()


def test_known_kinds_come_from_schema() -> None:
    assert "train" in known_kinds()
    assert len(set(known_kinds())) == len(known_kinds())
