"""Readers: real data sets, each layout's conversion, detection, containers and sources."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from cringe_core.data.defects import DataError, Defect, SkipReason
from cringe_core.data.formats import FORMATS
from cringe_core.data.prompts import read_prompts
from cringe_core.data.readers import read_records
from cringe_core.data.records import BinaryRecord, PreferenceRecord
from tests.data_helpers import load_json_rows, write_jsonl

# Observed once and cross-checked below by counting the raw rows with json alone:
# file, format, rows in the file, records, skipped by reason, defective rows by defect.
REAL_FILES: list[tuple[str, str, int, int, dict[str, int], dict[str, list[int]]]] = [
    (
        "hh-rlhf/harmless-base-test.jsonl.gz",
        "hh",
        2312,
        2303,
        {},
        {
            "prompt_mismatch": [1255, 1689, 1951, 1953, 2037],
            "empty_completion": [87, 517, 926, 1104],
        },
    ),
    (
        "alpaca-eval-annotations/FuseChat-Llama-3.2-1B-Instruct.json.gz",
        "alpaca",
        805,
        803,
        {"tie": 2},
        {},
    ),
    (
        "alpaca-eval-annotations/FuseChat-Llama-3.2-3B-Instruct.json.gz",
        "alpaca",
        805,
        802,
        {"tie": 3},
        {},
    ),
    (
        "alpaca-eval-annotations/Mixtral-8x7B-Instruct-v0.1_concise.json.gz",
        "alpaca",
        805,
        805,
        {},
        {},
    ),
    (
        "alpaca-eval-annotations/OpenHermes-2.5-Mistral-7B.json.gz",
        "alpaca",
        805,
        802,
        {"tie": 3},
        {},
    ),
    ("alpaca-eval-annotations/alpaca-farm-ppo-human.json.gz", "alpaca", 805, 802, {"tie": 3}, {}),
    ("alpaca-eval-annotations/claude-2.json.gz", "alpaca", 805, 804, {"tie": 1}, {}),
    ("alpaca-eval-annotations/phi-2.json.gz", "alpaca", 803, 800, {"tie": 3}, {}),
    (
        "alpaca-eval-annotations/text_davinci_003.json.gz",
        "alpaca",
        805,
        799,
        {"tie": 4},
        {"empty_completion": [248, 505]},
    ),
    ("llama-factory/dpo_en_demo.json.gz", "sharegpt", 300, 300, {}, {}),
    ("llama-factory/kto_en_demo.json.gz", "binary", 300, 300, {}, {}),
]


def _problem_rows(result: Any) -> dict[str, list[int]]:
    rows: dict[str, list[int]] = {}
    for problem in result.problems:
        rows.setdefault(str(problem.defect), []).append(problem.row)
    return rows


# ---- real data sets ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt", "rows", "records", "skipped", "problems"),
    REAL_FILES,
    ids=[entry[0].split("/")[-1] for entry in REAL_FILES],
)
def test_real_file_row_counts(
    shared_data: Path,
    name: str,
    fmt: str,
    rows: int,
    records: int,
    skipped: dict[str, int],
    problems: dict[str, list[int]],
) -> None:
    path = shared_data / name
    raw = load_json_rows(path)
    result = read_records(path)

    assert len(raw) == rows
    assert result.format == fmt
    assert result.rows_read == rows
    assert len(result.records) == records
    assert {str(reason): count for reason, count in result.skipped.items()} == skipped
    assert _problem_rows(result) == problems
    assert len(result.records) + sum(skipped.values()) + len(result.problems) == rows


@pytest.mark.parametrize(
    "name", [entry[0] for entry in REAL_FILES if entry[1] == "alpaca"], ids=lambda n: n[24:]
)
def test_alpaca_eval_preferences_match_raw(shared_data: Path, name: str) -> None:
    path = shared_data / name
    raw = load_json_rows(path)
    result = read_records(path)

    ties = sum(row["preference"] == 1.5 for row in raw)
    missing = sum(row.get("preference") is None for row in raw)
    assert result.skipped.get(SkipReason.TIE, 0) == ties
    assert result.skipped.get(SkipReason.MISSING_PREFERENCE, 0) == missing
    for record in result.records:
        assert isinstance(record, PreferenceRecord)
        source = raw[record.row - 1]
        winner, loser = ("output_1", "output_2")
        if source["preference"] > 1.5:
            winner, loser = loser, winner
        assert record.chosen == source[winner]
        assert record.rejected == source[loser]
        assert record.prompt == [{"role": "user", "content": source["instruction"]}]


def test_hh_prompt_is_prefix_before_last_assistant(shared_data: Path) -> None:
    path = shared_data / "hh-rlhf/harmless-base-test.jsonl.gz"
    raw = load_json_rows(path)
    result = read_records(path)

    for record in result.records:
        assert isinstance(record, PreferenceRecord)
        source = raw[record.row - 1]
        cut = source["chosen"].rfind("\n\nAssistant:") + len("\n\nAssistant:")
        assert record.chosen == source["chosen"][cut:].strip()
        assert record.rejected == source["rejected"][cut:].strip()
        human_turns = source["chosen"][:cut].count("\n\nHuman:")
        assert sum(m["role"] == "user" for m in record.prompt) == human_turns
        assert record.prompt[-1]["role"] == "user"


def test_sharegpt_real_rows_keep_system_turn(shared_data: Path) -> None:
    path = shared_data / "llama-factory/dpo_en_demo.json.gz"
    raw = load_json_rows(path)
    result = read_records(path)

    with_system = [row for row in raw if row["conversations"][0]["from"] == "system"]
    assert len(with_system) == 80
    system_records = [r for r in result.records if r.prompt[0]["role"] == "system"]
    assert len(system_records) == 80
    first = result.records[0]
    assert isinstance(first, PreferenceRecord)
    assert first.chosen == raw[0]["chosen"]["value"]
    assert first.rejected == raw[0]["rejected"]["value"]
    assert first.prompt == [{"role": "user", "content": raw[0]["conversations"][0]["value"]}]


def test_binary_real_labels_match_raw(shared_data: Path) -> None:
    path = shared_data / "llama-factory/kto_en_demo.json.gz"
    raw = load_json_rows(path)
    result = read_records(path)

    assert [r.label for r in result.records if isinstance(r, BinaryRecord)] == [
        row["label"] for row in raw
    ]
    last = result.records[-1]
    assert isinstance(last, BinaryRecord)
    assert last.completion == raw[-1]["messages"][-1]["content"]
    assert last.prompt == raw[-1]["messages"][:-1]


def test_unlabelled_pairs_rejected(shared_data: Path) -> None:
    with pytest.raises(DataError, match="unlabelled") as caught:
        read_records(shared_data / "alpaca-farm/outputs_pairs.json")
    assert "read_prompts" in str(caught.value)


def test_evaluation_set_is_not_preference_data(shared_data: Path) -> None:
    with pytest.raises(DataError, match="read_prompts"):
        read_records(shared_data / "alpaca-farm/eval_gpt-3.5-turbo-0301.json")


def test_read_prompts_alpaca_eval_set(shared_data: Path) -> None:
    path = shared_data / "alpaca-farm/eval_gpt-3.5-turbo-0301.json"
    raw = load_json_rows(path)
    prompts = read_prompts(path)

    assert len(prompts) == 805
    assert [p.reference for p in prompts] == [row["output"] for row in raw]
    assert [p.row for p in prompts] == list(range(1, 806))
    with_input = next(i for i, row in enumerate(raw) if row["input"])
    expected = f"{raw[with_input]['instruction']}\n\n{raw[with_input]['input']}"
    assert prompts[with_input].prompt == [{"role": "user", "content": expected}]


@pytest.mark.parametrize(
    ("name", "rows"),
    [("outputs_sft.json", 252), ("outputs_pairs.json", 6), ("multisamples_sft.json", 8)],
)
def test_read_prompts_alpaca_farm_outputs(shared_data: Path, name: str, rows: int) -> None:
    prompts = read_prompts(shared_data / "alpaca-farm" / name)

    assert len(prompts) == rows
    if name == "multisamples_sft.json":
        # `output` is a list of samples there, not one reference answer.
        assert all(p.reference is None for p in prompts)


# ---- layouts -------------------------------------------------------------------------


def _read_one(tmp_path: Path, row: dict[str, Any], fmt: str = "auto") -> Any:
    return read_records(write_jsonl(tmp_path / "data.jsonl", [row]), format=fmt)


def test_pairs_string_prompt(tmp_path: Path) -> None:
    result = _read_one(tmp_path, {"prompt": "Hi?", "chosen": "Hello.", "rejected": "Go away."})

    assert result.format == "pairs"
    assert result.records == [
        PreferenceRecord(
            prompt=[{"role": "user", "content": "Hi?"}], chosen="Hello.", rejected="Go away.", row=1
        )
    ]


def test_pairs_message_lists(tmp_path: Path) -> None:
    row = {
        "prompt": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi?"},
        ],
        "chosen": [{"role": "assistant", "content": "Hello."}],
        "rejected": [{"role": "assistant", "content": "Go away."}],
    }
    record = _read_one(tmp_path, row).records[0]

    assert record.prompt == row["prompt"]
    assert record.chosen == "Hello."
    assert record.rejected == "Go away."


def test_pairs_implicit_prompt(tmp_path: Path) -> None:
    shared = [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Red."},
        {"role": "user", "content": "Another?"},
    ]
    row = {
        "chosen": [*shared, {"role": "assistant", "content": "Blue."}],
        "rejected": [*shared, {"role": "assistant", "content": "Red."}],
    }
    result = _read_one(tmp_path, row)

    assert result.format == "pairs"
    assert result.records[0].prompt == shared
    assert result.records[0].chosen == "Blue."
    assert result.records[0].rejected == "Red."


def test_pairs_implicit_prompt_mismatch(tmp_path: Path) -> None:
    row = {
        "chosen": [{"role": "user", "content": "A"}, {"role": "assistant", "content": "x"}],
        "rejected": [{"role": "user", "content": "B"}, {"role": "assistant", "content": "y"}],
    }
    result = _read_one(tmp_path, row)

    assert result.records == []
    assert [(p.row, p.defect) for p in result.problems] == [(1, Defect.PROMPT_MISMATCH)]


def test_hh_transcript_to_messages(tmp_path: Path) -> None:
    prefix = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke."
    row = {
        "chosen": prefix + "\n\nAssistant: Why did the chicken cross the road?",
        "rejected": prefix + "\n\nAssistant: No.",
    }
    result = _read_one(tmp_path, row)

    assert result.format == "hh"
    assert result.records[0].prompt == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Tell me a joke."},
    ]
    assert result.records[0].chosen == "Why did the chicken cross the road?"
    assert result.records[0].rejected == "No."


@pytest.mark.parametrize(
    ("preference", "chosen", "skip"),
    [
        (1, "first", None),
        (2, "second", None),
        (1.2, "first", None),
        (1.7, "second", None),
        (1.5, None, SkipReason.TIE),
        (None, None, SkipReason.MISSING_PREFERENCE),
    ],
)
def test_alpaca_preference_values(
    tmp_path: Path, preference: float | None, chosen: str | None, skip: SkipReason | None
) -> None:
    rows = [
        {
            "instruction": "Say something.",
            "output_1": "first",
            "output_2": "second",
            "preference": preference,
        },
        {"instruction": "Labelled.", "output_1": "a", "output_2": "b", "preference": 1},
    ]
    result = read_records(write_jsonl(tmp_path / "a.jsonl", rows))

    assert result.format == "alpaca"
    if skip is None:
        assert isinstance(result.records[0], PreferenceRecord)
        assert result.records[0].chosen == chosen
        assert result.skipped == {}
    else:
        assert [r.row for r in result.records] == [2]
        assert result.skipped == {skip: 1}


def test_alpaca_input_joined_with_blank_line(tmp_path: Path) -> None:
    rows = [
        {
            "instruction": "Translate.",
            "input": "Bonjour",
            "output_1": "Hello",
            "output_2": "Bye",
            "preference": 1,
        },
        {
            "instruction": "Count to two.",
            "input": "",
            "output_1": "1 2",
            "output_2": "1",
            "preference": 1,
        },
        {"instruction": "No input key.", "output_1": "a", "output_2": "b", "preference": 2},
    ]
    result = read_records(write_jsonl(tmp_path / "a.jsonl", rows))

    contents = [r.prompt[0]["content"] for r in result.records]
    assert contents == ["Translate.\n\nBonjour", "Count to two.", "No input key."]


@pytest.mark.parametrize(
    ("preference", "defect"),
    [
        (3.0, Defect.INVALID_VALUE),
        (0.5, Defect.INVALID_VALUE),
        (True, Defect.WRONG_TYPE),
        ("1", Defect.WRONG_TYPE),
    ],
)
def test_alpaca_invalid_preference(tmp_path: Path, preference: Any, defect: Defect) -> None:
    row = {"instruction": "x", "output_1": "a", "output_2": "b", "preference": preference}
    result = _read_one(tmp_path, row, fmt="alpaca")

    assert [(p.row, p.defect) for p in result.problems] == [(1, defect)]


def test_sharegpt_roles_and_system_field(tmp_path: Path) -> None:
    row = {
        "system": "Be kind.",
        "conversations": [
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello"},
            {"from": "user", "value": "Bye?"},
        ],
        "chosen": {"from": "gpt", "value": "Bye!"},
        "rejected": {"from": "assistant", "value": "Whatever."},
    }
    record = _read_one(tmp_path, row).records[0]

    assert [m["role"] for m in record.prompt] == ["system", "user", "assistant", "user"]
    assert record.prompt[0]["content"] == "Be kind."
    assert (record.chosen, record.rejected) == ("Bye!", "Whatever.")


def test_binary_prompt_completion_layout(tmp_path: Path) -> None:
    row = {"prompt": "Hi?", "completion": "Hello.", "label": False}
    result = _read_one(tmp_path, row)

    assert result.format == "binary"
    assert result.records == [
        BinaryRecord(
            prompt=[{"role": "user", "content": "Hi?"}], completion="Hello.", label=False, row=1
        )
    ]


def test_binary_label_must_be_bool(tmp_path: Path) -> None:
    row = {"prompt": "Hi?", "completion": "Hello.", "label": 1}
    result = _read_one(tmp_path, row)

    assert [(p.row, p.defect) for p in result.problems] == [(1, Defect.WRONG_TYPE)]


# ---- detection -----------------------------------------------------------------------

DETECTION_CASES: dict[str, dict[str, Any]] = {
    "pairs": {"prompt": "p", "chosen": "c", "rejected": "r"},
    "hh": {"chosen": "\n\nHuman: p\n\nAssistant: c", "rejected": "\n\nHuman: p\n\nAssistant: r"},
    "alpaca": {"instruction": "p", "output_1": "a", "output_2": "b", "preference": 1.0},
    "sharegpt": {
        "conversations": [{"from": "human", "value": "p"}],
        "chosen": {"from": "gpt", "value": "c"},
        "rejected": {"from": "gpt", "value": "r"},
    },
    "binary": {
        "messages": [{"role": "user", "content": "p"}, {"role": "assistant", "content": "c"}],
        "label": True,
    },
}


def test_detection_covers_every_format() -> None:
    assert set(DETECTION_CASES) == set(FORMATS)


@pytest.mark.parametrize("fmt", sorted(DETECTION_CASES))
def test_detection_names_format(tmp_path: Path, fmt: str) -> None:
    result = _read_one(tmp_path, DETECTION_CASES[fmt])

    assert result.format == fmt
    assert len(result.records) == 1
    assert result.problems == []


def test_detection_skips_unreadable_first_line(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", ["{oops", DETECTION_CASES["alpaca"]])
    result = read_records(path)

    assert result.format == "alpaca"
    assert [(p.row, p.defect) for p in result.problems] == [(1, Defect.UNREADABLE_ROW)]


def test_unknown_format_lists_keys_and_formats(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(DataError) as caught:
        read_records(path)

    message = str(caught.value)
    assert "['answer', 'question']" in message
    for name, fmt in FORMATS.items():
        assert f"{name}: {fmt.layout}" in message


def test_unknown_format_name(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [DETECTION_CASES["pairs"]])
    with pytest.raises(DataError, match="unknown dataset format 'csv'"):
        read_records(path, format="csv")


def test_explicit_format_reports_missing_field(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "chosen": "c"}])
    result = read_records(path, format="pairs")

    assert [(p.row, p.defect) for p in result.problems] == [(1, Defect.MISSING_FIELD)]
    assert "rejected" in result.problems[0].detail


# ---- containers and sources ----------------------------------------------------------

PAIR_ROWS = [
    {"prompt": "one", "chosen": "a", "rejected": "b"},
    {"prompt": "two", "chosen": "c", "rejected": "d"},
]


@pytest.mark.parametrize("container", ["jsonl", "json", "jsonl.gz", "json.gz"])
def test_containers_read_same_records(tmp_path: Path, container: str) -> None:
    text = (
        json.dumps(PAIR_ROWS)
        if container.startswith("json.") or container == "json"
        else "\n".join(json.dumps(row) for row in PAIR_ROWS)
    )
    path = tmp_path / f"data.{container}"
    data = text.encode()
    path.write_bytes(gzip.compress(data) if container.endswith(".gz") else data)
    result = read_records(path)

    records = [r for r in result.records if isinstance(r, PreferenceRecord)]
    assert [(r.prompt[0]["content"], r.chosen, r.row) for r in records] == [
        ("one", "a", 1),
        ("two", "c", 2),
    ]


def test_jsonl_row_numbers_are_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    lines = [json.dumps(PAIR_ROWS[0]), "", "[1, 2]", "{bad json", json.dumps(PAIR_ROWS[1])]
    path.write_text("\n".join(lines), encoding="utf-8")
    result = read_records(path)

    assert [r.row for r in result.records] == [1, 5]
    assert [(p.row, p.defect) for p in result.problems] == [
        (3, Defect.UNREADABLE_ROW),
        (4, Defect.UNREADABLE_ROW),
    ]
    assert result.rows_read == 4


def test_max_rows(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", PAIR_ROWS * 5)
    result = read_records(path, max_rows=3)

    assert result.rows_read == 3
    assert len(result.records) == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"  \n\n", "is empty"),
        (b"[]", "empty JSON array"),
        (b'[{"prompt": 1,', "not a valid JSON array"),
        (b'{\n  "prompt": "p"\n}\n', "single JSON object"),
        (b"\x1f\x8b\x08garbage", "damaged gzip"),
    ],
)
def test_unusable_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "d.json"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_records(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_records(tmp_path / "absent.jsonl")


def test_missing_file_with_owner_name_shape() -> None:
    # "data/train.jsonl" has the owner/name shape but a file suffix, so it is a path.
    with pytest.raises(DataError, match="not found"):
        read_records("data/absent-train.jsonl")


def test_hub_dataset_rows_converted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(name: str, split: str) -> list[dict[str, Any]]:
        calls.append((name, split))
        return list(DETECTION_CASES["hh"] for _ in range(3))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    from_hub = read_records("someone/hh-pairs", split="test", max_rows=2)
    from_file = read_records(write_jsonl(tmp_path / "d.jsonl", [DETECTION_CASES["hh"]] * 2))

    assert calls == [("someone/hh-pairs", "test")]
    assert from_hub.format == "hh"
    assert from_hub.records == from_file.records


def test_hub_without_datasets_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(DataError, match="needs the `datasets` package"):
        read_records("someone/some-pairs")


def test_hub_unreachable_error() -> None:
    pytest.importorskip("datasets")
    # Offline mode makes the hub unreachable at once, without network retries.
    script = textwrap.dedent(
        """
        from cringe_core.data.defects import DataError
        from cringe_core.data.readers import read_records
        try:
            read_records("cringe-test-owner/no-such-dataset")
        except DataError as error:
            print(error)
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    completed = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )

    assert "cannot load hub data set 'cringe-test-owner/no-such-dataset'" in completed.stdout
    assert "unreachable" in completed.stdout


# ---- prompt files --------------------------------------------------------------------


def test_read_prompts_strings_and_messages(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"prompt": "Hi?"},
        {
            "prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}],
            "reference": "A",
        },
    ]
    prompts = read_prompts(write_jsonl(tmp_path / "p.jsonl", rows))

    assert prompts[0].prompt == [{"role": "user", "content": "Hi?"}]
    assert prompts[0].reference is None
    assert prompts[1].prompt == rows[1]["prompt"]
    assert prompts[1].reference == "A"


def test_read_prompts_names_bad_rows(tmp_path: Path) -> None:
    rows = [{"prompt": "ok"}, {"prompt": ""}, {"question": "?"}]
    with pytest.raises(DataError) as caught:
        read_prompts(write_jsonl(tmp_path / "p.jsonl", rows))

    message = str(caught.value)
    assert "empty_prompt: 1 row(s), first rows 2" in message
    assert "missing_field: 1 row(s), first rows 3" in message
