"""Tokenization through the chat template, the data check, prepare_dataset and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cringe_core.data import check_cli
from cringe_core.data.check import DataError, check_records, prepare_dataset
from cringe_core.data.defects import DEFECT_INFO, Defect
from cringe_core.data.readers import read_records
from cringe_core.data.records import BinaryRecord, Message, PreferenceRecord, TokenizedPair
from cringe_core.data.report import LengthStats
from cringe_core.data.tokenize import (
    ChatTemplateError,
    TemplateFailure,
    encode_record,
    encode_records,
    tokenize_example,
    tokenize_pair,
)
from cringe_core.spec import DatasetSpec
from tests.data_helpers import with_chat_template, write_jsonl

# Registers the session-scoped tokenizer fixtures, since tests/conftest.py is shared.
pytest_plugins = ["tests.data_fixtures"]

# A template in the style of Llama-2 and Mistral, which raise unless roles alternate.
ALTERNATING_TEMPLATE = (
    "{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant') }}"
    "{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% else %}{{ message['content'] + eos_token }}{% endif %}"
    "{% endfor %}"
)
END_OF_TURN = "<|im_end|>"
LONG_TEXT = " ".join(["word"] * 60)


def _user(text: str) -> list[Message]:
    return [Message(role="user", content=text)]


def _pair(prompt: Any, chosen: Any, rejected: Any) -> dict[str, Any]:
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


CLEAN_FIRST = _pair("What is 2 + 2?", "4.", "5.")
CLEAN_LAST = _pair("Name a colour.", "Blue.", "Seven.")


def _alpaca(preference: Any) -> dict[str, Any]:
    return {
        "instruction": "Say hi.",
        "output_1": "Hi!",
        "output_2": "No.",
        "preference": preference,
    }


def _binary(completion: str, prompt: str = "Say hi.") -> dict[str, Any]:
    return {"prompt": prompt, "completion": completion, "label": True}


# defect, the three rows (only the second is defective), max_length, chat template
# (None keeps SmolLM2's), and the warnings a fatal defect brings with it.
DEFECT_CASES: list[tuple[Defect, list[Any], int, str | None, set[Defect]]] = [
    (Defect.UNREADABLE_ROW, [CLEAN_FIRST, '{"prompt": "oops", ', CLEAN_LAST], 256, None, set()),
    (
        Defect.MISSING_FIELD,
        [CLEAN_FIRST, {"prompt": "Q?", "chosen": "A."}, CLEAN_LAST],
        256,
        None,
        set(),
    ),
    (Defect.WRONG_TYPE, [CLEAN_FIRST, _pair("Q?", 5, "A."), CLEAN_LAST], 256, None, set()),
    (Defect.INVALID_VALUE, [_alpaca(1), _alpaca(7), _alpaca(2.0)], 256, None, set()),
    (
        Defect.INVALID_CONVERSATION,
        [
            CLEAN_FIRST,
            _pair([*_user("Q"), {"role": "assistant", "content": "A"}], "x", "y"),
            CLEAN_LAST,
        ],
        256,
        None,
        set(),
    ),
    (
        Defect.PROMPT_MISMATCH,
        [
            CLEAN_FIRST,
            {
                "chosen": [*_user("A?"), {"role": "assistant", "content": "x"}],
                "rejected": [*_user("B?"), {"role": "assistant", "content": "y"}],
            },
            CLEAN_LAST,
        ],
        256,
        None,
        set(),
    ),
    (Defect.EMPTY_PROMPT, [CLEAN_FIRST, _pair("  ", "A.", "B."), CLEAN_LAST], 256, None, set()),
    (Defect.EMPTY_COMPLETION, [CLEAN_FIRST, _pair("Q?", "A.", ""), CLEAN_LAST], 256, None, set()),
    (
        Defect.CHAT_TEMPLATE_ERROR,
        [CLEAN_FIRST, _pair([*_user("Q1"), *_user("Q2")], "A.", "B."), CLEAN_LAST],
        256,
        ALTERNATING_TEMPLATE,
        set(),
    ),
    (
        Defect.CHOSEN_EQUALS_REJECTED,
        [CLEAN_FIRST, _pair("Q?", "Same.", "Same."), CLEAN_LAST],
        256,
        None,
        set(),
    ),
    (
        Defect.EQUAL_AFTER_TRUNCATION,
        [CLEAN_FIRST, _pair("Q?", LONG_TEXT + " good", LONG_TEXT + " bad"), CLEAN_LAST],
        48,
        None,
        {Defect.OVER_MAX_LENGTH},
    ),
    # SmolLM2's template puts "\n" before the answer; "\n" + "\n\n..." merges into one
    # token, so the prompt's last token is not in the full sequence.
    (
        Defect.PROMPT_NOT_PREFIX,
        [CLEAN_FIRST, _pair("Q?", "\n\nA.", "B."), CLEAN_LAST],
        256,
        None,
        set(),
    ),
    (
        Defect.DOUBLED_END_OF_TURN,
        [CLEAN_FIRST, _pair("Q?", "A." + END_OF_TURN, "B."), CLEAN_LAST],
        256,
        None,
        set(),
    ),
    (
        Defect.COMPLETION_EMPTIED_BY_TRUNCATION,
        [CLEAN_FIRST, _pair(LONG_TEXT, "A.", "B."), CLEAN_LAST],
        48,
        None,
        {Defect.OVER_MAX_LENGTH},
    ),
    (
        Defect.OVER_MAX_LENGTH,
        [CLEAN_FIRST, _pair("Q?", LONG_TEXT, "B."), CLEAN_LAST],
        48,
        None,
        set(),
    ),
]


def test_defect_cases_cover_every_defect() -> None:
    assert {case[0] for case in DEFECT_CASES} == set(Defect)


@pytest.mark.parametrize("case", DEFECT_CASES, ids=[str(case[0]) for case in DEFECT_CASES])
def test_single_defect_reported(
    tmp_path: Path, smollm2_tokenizer: Any, case: tuple[Defect, list[Any], int, Any, set[Defect]]
) -> None:
    defect, rows, max_length, template, warnings = case
    tokenizer = (
        smollm2_tokenizer if template is None else with_chat_template(smollm2_tokenizer, template)
    )
    report = check_records(
        read_records(write_jsonl(tmp_path / "d.jsonl", rows)), tokenizer, max_length
    )

    assert set(report.defects) == {defect} | warnings
    assert report.defects[defect].rows == [2]
    for warning in warnings:
        assert report.defects[warning].rows == [2]
    fatal = DEFECT_INFO[defect].fatal
    assert report.invalid_rows == ([2] if fatal else [])
    assert [row.row for row in report.valid_rows] == ([1, 3] if fatal else [1, 2, 3])


@pytest.mark.parametrize(
    ("defect", "row", "max_length"),
    [
        (Defect.DOUBLED_END_OF_TURN, _binary("Hi!" + END_OF_TURN), 256),
        (Defect.COMPLETION_EMPTIED_BY_TRUNCATION, _binary("Hi!", prompt=LONG_TEXT), 48),
        (Defect.EMPTY_COMPLETION, _binary(" "), 256),
    ],
)
def test_binary_defect_reported(
    tmp_path: Path, smollm2_tokenizer: Any, defect: Defect, row: dict[str, Any], max_length: int
) -> None:
    rows = [_binary("Hello!"), row, _binary("Hey.")]
    report = check_records(
        read_records(write_jsonl(tmp_path / "d.jsonl", rows)), smollm2_tokenizer, max_length
    )

    assert report.format == "binary"
    assert defect in report.defects
    assert report.defects[defect].rows == [2]
    assert report.invalid_rows == [2]
    assert [example.row for example in report.valid_rows] == [1, 3]


# ---- tokenization --------------------------------------------------------------------


def _record(chosen: str = "Blue.", rejected: str = "Seven.", prompt: str = "A colour?") -> Any:
    return PreferenceRecord(prompt=_user(prompt), chosen=chosen, rejected=rejected, row=1)


def test_tokenize_pair_follows_chat_template(smollm2_tokenizer: Any) -> None:
    tokenizer = smollm2_tokenizer
    record = _record()
    pair = tokenize_pair(record, tokenizer, max_length=256)

    prompt_ids = tokenizer.apply_chat_template(
        record.prompt, add_generation_prompt=True, return_dict=False
    )
    full_ids = tokenizer.apply_chat_template(
        [*record.prompt, {"role": "assistant", "content": "Blue."}], return_dict=False
    )
    assert pair.prompt_ids == prompt_ids
    assert pair.chosen_ids == full_ids[len(prompt_ids) :]
    end_of_turn_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    newline_ids = tokenizer.encode("\n", add_special_tokens=False)
    assert pair.chosen_ids[-1 - len(newline_ids) :] == [end_of_turn_id, *newline_ids]
    assert tokenizer.decode(pair.rejected_ids) == "Seven." + END_OF_TURN + "\n"
    assert pair.row == 1


def test_tokenize_pair_truncates_completion(smollm2_tokenizer: Any) -> None:
    record = _record(chosen=LONG_TEXT, rejected="No.")
    full = tokenize_pair(record, smollm2_tokenizer, max_length=1024)
    cut = tokenize_pair(record, smollm2_tokenizer, max_length=48)

    assert cut.prompt_ids == full.prompt_ids
    assert len(cut.prompt_ids) + len(cut.chosen_ids) == 48
    assert cut.chosen_ids == full.chosen_ids[: 48 - len(full.prompt_ids)]
    assert cut.rejected_ids == full.rejected_ids


def test_tokenize_pair_prompt_fills_max_length(smollm2_tokenizer: Any) -> None:
    record = _record(prompt=LONG_TEXT)
    pair = tokenize_pair(record, smollm2_tokenizer, max_length=16)

    assert len(pair.prompt_ids) > 16
    assert pair.chosen_ids == []
    assert pair.rejected_ids == []


def test_tokenize_example(smollm2_tokenizer: Any) -> None:
    record = BinaryRecord(prompt=_user("Hi"), completion="Hello.", label=False, row=7)
    example = tokenize_example(record, smollm2_tokenizer, max_length=256)

    assert smollm2_tokenizer.decode(example.completion_ids) == "Hello." + END_OF_TURN + "\n"
    assert example.label is False
    assert example.row == 7


def test_encoding_facts(smollm2_tokenizer: Any) -> None:
    encoding = encode_record(
        _record(chosen="A." + END_OF_TURN, rejected=LONG_TEXT), smollm2_tokenizer, max_length=48
    )
    chosen, rejected = encoding.completions

    assert chosen.doubled_end_of_turn
    assert not rejected.doubled_end_of_turn
    assert chosen.prompt_is_prefix and rejected.prompt_is_prefix
    assert rejected.truncated
    assert rejected.completion_length == 60 + 2  # 60 words, end-of-turn, newline
    assert encoding.over_max_length


def test_missing_chat_template_error(smollm2_tokenizer: Any) -> None:
    tokenizer = with_chat_template(smollm2_tokenizer, None)
    with pytest.raises(ChatTemplateError) as caught:
        tokenize_pair(_record(), tokenizer, max_length=64)

    message = str(caught.value)
    assert "no chat template" in message
    assert "instruct or chat model" in message
    assert "tokenizer.chat_template" in message


def test_batched_encoding_matches_single(shared_data: Path, smollm2_tokenizer: Any) -> None:
    records = read_records(
        shared_data / "hh-rlhf/harmless-base-test.jsonl.gz", max_rows=120
    ).records
    batched = encode_records(records, smollm2_tokenizer, max_length=128, batch_size=32)

    assert batched == [encode_record(r, smollm2_tokenizer, 128) for r in records]


def test_batched_encoding_isolates_template_error(smollm2_tokenizer: Any) -> None:
    tokenizer = with_chat_template(smollm2_tokenizer, ALTERNATING_TEMPLATE)
    good = _record()
    bad = PreferenceRecord(prompt=[*_user("a"), *_user("b")], chosen="x", rejected="y", row=2)
    results = encode_records([good, bad, good], tokenizer, max_length=64)

    assert isinstance(results[1], TemplateFailure)
    assert "roles must alternate" in results[1].message
    assert results[0] == results[2] == encode_record(good, tokenizer, 64)


# ---- report --------------------------------------------------------------------------


def test_length_stats_percentiles() -> None:
    stats = LengthStats.of([10, 20, 30, 40])

    # "higher" picks the observed value at or above each rank: p50 at rank 1.5 is 30.
    assert (stats.p50, stats.p90, stats.p99, stats.max, stats.count) == (30, 40, 40, 40, 4)
    assert LengthStats.of([]).count == 0


def test_report_lengths_untruncated(tmp_path: Path, smollm2_tokenizer: Any) -> None:
    rows = [CLEAN_FIRST, _pair("Q?", LONG_TEXT, "B.")]
    report = check_records(
        read_records(write_jsonl(tmp_path / "d.jsonl", rows)), smollm2_tokenizer, 48
    )
    prompt = len(report.valid_rows[1].prompt_ids)  # the row with the long completion

    assert report.lengths["prompt"].count == 2
    assert report.lengths["completion"].count == 4
    assert report.lengths["completion"].max == 62
    assert report.lengths["total"].max == prompt + 62


def test_report_dict_and_table(shared_data: Path, smollm2_tokenizer: Any) -> None:
    read_result = read_records(shared_data / "hh-rlhf/harmless-base-test.jsonl.gz")
    report = check_records(read_result, smollm2_tokenizer, 1024)
    data = json.loads(json.dumps(report.to_dict()))
    defects = {entry["code"]: entry for entry in data["defects"]}

    assert data["rows_read"] == 2312
    assert data["invalid_rows"] == 9
    assert data["valid_rows"] == 2303
    assert defects["prompt_mismatch"]["first_rows"] == [1255, 1689, 1951, 1953, 2037]
    assert defects["empty_completion"]["first_rows"] == [87, 517, 926, 1104]
    assert defects["empty_completion"]["fatal"] is True
    assert defects["over_max_length"] == {
        "code": "over_max_length",
        "fatal": False,
        "count": 1,
        "first_rows": [927],
        "description": DEFECT_INFO[Defect.OVER_MAX_LENGTH].description,
        "example": "",
    }
    assert set(data["lengths"]) == {"prompt", "completion", "total"}
    assert data["lengths"]["total"]["max"] == 1025

    table = report.format_table()
    assert "prompt_mismatch" in table
    assert "1255, 1689, 1951, 1953, 2037" in table
    assert "valid 2303, invalid 9" in table


def test_report_first_rows_capped(tmp_path: Path, smollm2_tokenizer: Any) -> None:
    rows = [_pair("Q?", "Same.", "Same.")] * 12 + [CLEAN_LAST]
    report = check_records(
        read_records(write_jsonl(tmp_path / "d.jsonl", rows)), smollm2_tokenizer, 256
    )
    entry = report.to_dict()["defects"][0]

    assert entry["count"] == 12
    assert entry["first_rows"] == list(range(1, 11))


# ---- prepare_dataset -----------------------------------------------------------------


def _spec(path: Path, **fields: Any) -> DatasetSpec:
    return DatasetSpec(path=str(path), **fields)


def test_prepare_dataset_clean(tmp_path: Path, smollm2_tokenizer: Any) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [CLEAN_FIRST, CLEAN_LAST])
    rows, report = prepare_dataset(_spec(path), smollm2_tokenizer, 256)

    assert [row.row for row in rows] == [1, 2]
    assert all(isinstance(row, TokenizedPair) for row in rows)
    assert report.dropped_rows == 0


def test_prepare_dataset_rejects_bad_rows(tmp_path: Path, smollm2_tokenizer: Any) -> None:
    rows = [CLEAN_FIRST, _pair("Q?", "A.", ""), CLEAN_LAST, CLEAN_FIRST]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError) as caught:
        prepare_dataset(_spec(path), smollm2_tokenizer, 256)

    message = str(caught.value)
    assert str(path) in message
    assert "1 of 4 rows (25.00%) are invalid" in message
    assert "empty_completion: 1 row(s) (rows 2)" in message
    assert "rejected is empty" in message
    assert "max_invalid_fraction to at least 0.25" in message
    assert caught.value.report is not None
    assert caught.value.report.invalid_rows == [2]


def test_prepare_dataset_drops_allowed_share(tmp_path: Path, smollm2_tokenizer: Any) -> None:
    rows = [CLEAN_FIRST, _pair("Q?", "A.", ""), CLEAN_LAST, CLEAN_FIRST]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    kept, report = prepare_dataset(_spec(path, max_invalid_fraction=0.25), smollm2_tokenizer, 256)

    assert [row.row for row in kept] == [1, 3, 4]
    assert report.dropped_rows == 1
    assert report.to_dict()["dropped_rows"] == 1


def test_prepare_dataset_share_excludes_skipped(tmp_path: Path, smollm2_tokenizer: Any) -> None:
    # 2 ties are skipped, so 1 bad row among the 4 others is 25%, not 1 in 6.
    rows = [_alpaca(1.5), _alpaca(1.5), _alpaca(1), _alpaca(9), _alpaca(2), _alpaca(1.2)]
    path = write_jsonl(tmp_path / "a.jsonl", rows)
    with pytest.raises(DataError, match="1 of 4 rows"):
        prepare_dataset(_spec(path, max_invalid_fraction=0.2), smollm2_tokenizer, 256)
    kept, report = prepare_dataset(_spec(path, max_invalid_fraction=0.25), smollm2_tokenizer, 256)

    assert [row.row for row in kept] == [3, 5, 6]
    assert report.skipped == {"tie": 2}


def test_prepare_dataset_all_skipped(tmp_path: Path, smollm2_tokenizer: Any) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [_alpaca(1.5), _alpaca(1.5)])
    with pytest.raises(DataError, match="all 2 rows were skipped"):
        prepare_dataset(_spec(path), smollm2_tokenizer, 256)


def test_prepare_dataset_no_valid_rows(tmp_path: Path, smollm2_tokenizer: Any) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [_pair("Q?", "A.", "A.")])
    with pytest.raises(DataError, match="none of its 1 rows is valid"):
        prepare_dataset(_spec(path, max_invalid_fraction=1.0), smollm2_tokenizer, 256)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "not found"), (b"", "is empty"), (b"\x1f\x8b\x08junk", "damaged gzip")],
)
def test_prepare_dataset_unusable_file(
    tmp_path: Path, smollm2_tokenizer: Any, content: bytes | None, message: str
) -> None:
    path = tmp_path / "d.jsonl"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        prepare_dataset(_spec(path), smollm2_tokenizer, 256)


def test_prepare_dataset_honours_spec_fields(tmp_path: Path, smollm2_tokenizer: Any) -> None:
    path = write_jsonl(tmp_path / "d.json", [CLEAN_FIRST, CLEAN_LAST, CLEAN_FIRST])
    rows, report = prepare_dataset(_spec(path, format="pairs", max_rows=2), smollm2_tokenizer, 256)

    assert len(rows) == 2
    assert report.format == "pairs"
    assert report.rows_read == 2


# ---- command line --------------------------------------------------------------------


@pytest.fixture
def cli_tokenizer(monkeypatch: pytest.MonkeyPatch, smollm2_tokenizer: Any) -> None:
    monkeypatch.setattr(check_cli, "load_tokenizer", lambda name: smollm2_tokenizer)


@pytest.mark.usefixtures("cli_tokenizer")
def test_cli_clean_exit_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [CLEAN_FIRST, _pair("Q?", LONG_TEXT, "B.")])
    code = check_cli.run_data_check(str(path), "any-model", 48)

    output = capsys.readouterr().out
    assert code == 0
    assert "over_max_length" in output
    assert "p50" in output


@pytest.mark.usefixtures("cli_tokenizer")
def test_cli_defects_exit_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [CLEAN_FIRST, _pair("Q?", "Same.", "Same.")])
    code = check_cli.run_data_check(str(path), "any-model", 256)

    output = capsys.readouterr().out
    assert code == 1
    assert "chosen_equals_rejected" in output
    assert "1 invalid row(s)" in output


@pytest.mark.usefixtures("cli_tokenizer")
def test_cli_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [CLEAN_FIRST, _pair("Q?", "Same.", "Same.")])
    code = check_cli.run_data_check(str(path), "any-model", 256, as_json=True)

    data = json.loads(capsys.readouterr().out)
    assert code == 1
    assert data["defects"][0]["code"] == "chosen_equals_rejected"
    assert data["defects"][0]["first_rows"] == [2]


@pytest.mark.usefixtures("cli_tokenizer")
def test_cli_unusable_input_exit_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = check_cli.run_data_check(str(tmp_path / "absent.jsonl"), "any-model", 256)

    assert code == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.usefixtures("cli_tokenizer")
def test_cli_all_skipped_exit_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [_alpaca(1.5)])
    code = check_cli.run_data_check(str(path), "any-model", 256, format="alpaca")

    assert code == 2
    assert "no usable rows" in capsys.readouterr().out


def test_cli_template_missing_exit_two(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    smollm2_tokenizer: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plain = with_chat_template(smollm2_tokenizer, None)
    monkeypatch.setattr(check_cli, "load_tokenizer", lambda name: plain)
    path = write_jsonl(tmp_path / "d.jsonl", [CLEAN_FIRST])
    code = check_cli.run_data_check(str(path), "base-model", 256, as_json=True)

    error = json.loads(capsys.readouterr().out)["error"]
    assert code == 2
    assert error["code"] == "model_error"
    assert "no chat template" in error["message"]


def test_cli_real_tokenizer_loader(
    tmp_path: Path, smollm2_tokenizer_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [CLEAN_FIRST, CLEAN_LAST])
    assert check_cli.run_data_check(str(path), str(smollm2_tokenizer_dir), 256) == 0

    missing_model = tmp_path / "no-model"
    missing_model.mkdir()
    assert check_cli.run_data_check(str(path), str(missing_model), 256) == 2
    assert "cannot load model" in capsys.readouterr().err


def test_end_of_turn_read_from_template(smollm2_tokenizer: Any) -> None:
    template = (
        "{% for message in messages %}{{ message['role'] + ':\\n' + message['content'] }}"
        "{% if message['role'] == 'assistant' %}{{ '<|endoftext|>' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant:\\n' }}{% endif %}"
    )
    tokenizer = with_chat_template(smollm2_tokenizer, template)
    record = _record(chosen="A.<|endoftext|>", rejected="B.")
    chosen, rejected = encode_record(record, tokenizer, max_length=64).completions

    assert chosen.doubled_end_of_turn
    assert not rejected.doubled_end_of_turn
    assert rejected.prompt_is_prefix
    assert tokenizer.decode(rejected.completion_ids) == "B.<|endoftext|>"
