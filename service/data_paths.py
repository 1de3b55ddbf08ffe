"""Where a job may read from: data sets only inside the configured data roots.

A path is checked twice: as written, after collapsing `..`, and after resolving every
symbolic link, so neither `../` nor a link inside a root can reach a file outside the
roots. Relative paths are looked up under each root in order. Hub data set names are
not fetched by this server; put the file under a data root instead.

Spec fields are found by shape, not by job kind, so kinds added to the spec later are
checked too. A string field called `path` is a data set file, and `heldout_from` is the
folder of an earlier run. An object with `name` and `revision` names a model. Model and
run folders may also sit in the runs folder, where earlier jobs saved them.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from service.errors import (
    DatasetEmpty,
    DatasetFormatUnknown,
    DatasetNotFound,
    DatasetPathNotAllowed,
    DatasetUnreadable,
    DomainError,
    ModelUnknown,
)

DATA_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz", ".gz")
# Spec fields that name local files or folders, by key. A new such field in the spec must
# be listed here to be confined to the roots. A test walks the spec schema to catch one
# that is not.
DATA_FILE_KEYS = ("path",)
RUN_FOLDER_KEYS = ("heldout_from",)
_SNIFF_BYTES = 4096


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def _roots_text(roots: list[Path]) -> str:
    return ", ".join(str(root) for root in roots) or "(none configured: set CRINGE_DATA_ROOTS)"


def locate(raw: str, roots: list[Path], param: str, what: str = "data set") -> Path:
    """Return the real path of `raw` inside a root, or raise naming the allowed roots."""
    if "\x00" in raw:
        raise DatasetPathNotAllowed(f"{what} path {raw!r} contains a NUL character; remove it",
                                    param=param)
    lexical_roots = [Path(os.path.abspath(root)) for root in roots]
    real_roots = [Path(os.path.realpath(root)) for root in roots]
    given = Path(raw)
    candidates = [given] if given.is_absolute() else [root / given for root in lexical_roots]

    for candidate in candidates:
        lexical = Path(os.path.normpath(candidate))
        if not _inside(lexical, lexical_roots):
            raise DatasetPathNotAllowed(
                f"{what} path {raw!r} is outside the allowed data roots ({_roots_text(roots)}); "
                "use a path inside one of them, without '..' leaving it",
                param=param,
            )
        real = Path(os.path.realpath(candidate))
        if not _inside(real, real_roots):
            raise DatasetPathNotAllowed(
                f"{what} path {raw!r} resolves through a symbolic link to {str(real)!r}, "
                f"outside the allowed data roots ({_roots_text(roots)}); copy the file into "
                "a root instead of linking to it",
                param=param,
            )
        if real.exists():
            return real
    raise DatasetNotFound(
        f"{what} {raw!r} not found under the data roots ({_roots_text(roots)}); give a "
        "path to a file inside one of them (hub data sets are not fetched by this server)",
        param=param,
    )


def check_data_file(path: Path, raw: str, param: str) -> None:
    """Reject what can be known before training: not a file, unreadable, empty, not JSON."""
    if not path.is_file():
        raise DatasetUnreadable(
            f"data set {raw!r} is not a regular file; give a JSON, JSONL or gzip file",
            param=param,
        )
    if not path.name.endswith(DATA_SUFFIXES):
        raise DatasetFormatUnknown(
            f"data set {raw!r} has an unknown format; expected a file ending in "
            f"{', '.join(DATA_SUFFIXES)}",
            param=param,
        )
    try:
        head = _read_head(path)
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetUnreadable(
            f"data set {raw!r} cannot be read ({type(error).__name__}: {error}); check the "
            "file's permissions and that a .gz file is complete",
            param=param,
        ) from None
    text = head.lstrip()
    if not text:
        raise DatasetEmpty(f"data set {raw!r} is empty; it needs at least one row", param=param)
    if text[:1] not in (b"{", b"["):
        raise DatasetFormatUnknown(
            f"data set {raw!r} is not JSON or JSON lines (it starts with {text[:20]!r}); "
            "give a JSON list of records or one JSON object per line",
            param=param,
        )


def _read_head(path: Path) -> bytes:
    with path.open("rb") as handle:
        magic = handle.read(2)
    if magic == b"\x1f\x8b":
        with gzip.open(path, "rb") as handle:
            return handle.read(_SNIFF_BYTES)
    with path.open("rb") as handle:
        return handle.read(_SNIFF_BYTES)


def _objects(node: Any, pointer: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield every JSON object in `node`, with its JSON pointer."""
    if isinstance(node, dict):
        yield pointer, node
        for key, value in node.items():
            yield from _objects(value, f"{pointer}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _objects(value, f"{pointer}/{index}")


def is_model_reference(node: dict[str, Any]) -> bool:
    """Return whether `node` names a model: it has `name` and `revision` (policy, judge...)."""
    return isinstance(node.get("name"), str) and "revision" in node


def check_spec_paths(
    resolved: dict[str, Any],
    data_roots: list[Path],
    model_roots: list[Path],
    models: list[str],
    base_param: str,
) -> tuple[dict[str, Any], list[DomainError]]:
    """Check every data file, run folder and model of a resolved spec.

    Returns the spec with local paths replaced by their real absolute paths, so the
    worker reads exactly what was checked, and every problem found.
    """
    problems: list[DomainError] = []
    replacements: dict[str, str] = {}
    for pointer, node in _objects(resolved):
        checks: list[tuple[str, Any]] = []
        if is_model_reference(node):
            checks.append(("name", lambda raw, param: check_model(raw, models, model_roots,
                                                                  param)))
        for key in DATA_FILE_KEYS:
            checks.append((key, lambda raw, param: check_data_path(raw, data_roots, param)))
        for key in RUN_FOLDER_KEYS:
            checks.append((key, lambda raw, param: check_folder(raw, model_roots, param)))
        for key, check in checks:
            raw = node.get(key)
            if not isinstance(raw, str):
                continue
            try:
                replacements[f"{pointer}/{key}"] = check(raw, base_param + f"{pointer}/{key}")
            except DomainError as error:
                problems.append(error)
    return _replace(resolved, replacements), problems


def check_data_path(raw: str, roots: list[Path], param: str) -> str:
    real = locate(raw, roots, param)
    check_data_file(real, raw, param)
    return str(real)


def check_folder(raw: str, roots: list[Path], param: str) -> str:
    real = locate(raw, roots, param, what="folder")
    if not real.is_dir():
        raise DatasetUnreadable(f"{raw!r} is not a folder; give the folder of a finished run",
                                param=param)
    return str(real)


def check_model(name: str, models: list[str], roots: list[Path], param: str) -> str:
    """Accept a model from the server's list of names, or a model folder inside a root."""
    if name in models:
        return name
    unknown = ModelUnknown(
        f"unknown model {name!r}; this server accepts {', '.join(models) or 'no named models'}, "
        f"or a model folder inside the data roots ({_roots_text(roots)})",
        param=param,
    )
    try:
        folder = locate(name, roots, param, what="model")
    except (DatasetNotFound, DatasetPathNotAllowed):
        raise unknown from None
    if not folder.is_dir():
        raise unknown
    return str(folder)


def _replace(node: Any, replacements: dict[str, str], pointer: str = "") -> Any:
    if isinstance(node, dict):
        return {
            key: replacements.get(f"{pointer}/{key}", _replace(value, replacements,
                                                               f"{pointer}/{key}"))
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_replace(value, replacements, f"{pointer}/{i}") for i, value in enumerate(node)]
    return node
