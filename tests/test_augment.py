"""Teacher augmentation: validation rules, prompt, offline rule, real/faulty servers, resume."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, Fault

from trl_ext.client import OpenAICompatibleClient
from trl_ext.data.augment import (
    AUGMENTED_SCHEMA,
    REJECT_SCHEMA,
    AugmentArguments,
    AugmentLimits,
    OfflineRuleAugmenter,
    Rejected,
    TeacherAugmenter,
    augment_file,
    build_augmented,
    extract_augmented_text,
    load_prompt,
    raw_chunk,
    run,
)
from trl_ext.data.markup import count_thoughts, is_balanced, normalise_tags, strip_thoughts
from trl_ext.data.rows import RowFileError, read_rows

RAW = (
    "The river rose during the night. Farmers moved their cattle to the hills before dawn. "
    "By noon the water covered the lower fields. Engineers opened the old canal to relieve the pressure. "
    "The level fell slowly through the evening."
)
GOOD = (
    "The river rose during the night.<think>Night flooding gives little warning.</think> Farmers moved their "
    "cattle to the hills before dawn.<think>Higher ground keeps livestock safe.</think> "
    "By noon the water covered "
    "the lower fields. Engineers opened the old canal to relieve the pressure.<verification>A canal diverts "
    "flow, so the level should drop.</verification> The level fell slowly through the evening."
)
LIMITS = AugmentLimits(min_augmented_tokens=8)


def test_build_accepts_and_normalises(qwen_tokenizer):
    fields = build_augmented(RAW, GOOD, qwen_tokenizer, LIMITS)
    assert fields["think_count"] == 3 and fields["raw_word_coverage"] == 1.0 and not fields["truncated"]
    assert "<verification>" not in fields["augmented_text"] and is_balanced(fields["augmented_text"])
    assert fields["augmented_text"] == qwen_tokenizer.decode(fields["interleaved_thinking_ids"])
    assert fields["interleaved_thinking_ids"].count(151667) == 3
    assert strip_thoughts(fields["augmented_text"]).split() == RAW.split()


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("   ", "empty_reply"),
        (
            GOOD.replace("<verification>", "<insight>").replace("</verification>", "</insight>"),
            "unknown_tags",
        ),
        (GOOD.replace("</verification>", ""), "unbalanced_tags"),
        (
            GOOD.replace("<think>Night flooding gives little warning.</think>", "<think> </think>"),
            "empty_thought",
        ),
        (RAW + " <think>only one</think>", "too_few_thoughts"),
        (
            " ".join(f"{s}.<think>t{i} note</think>" for i, s in enumerate(RAW.split(". ")))
            + "<think>x</think><think>y</think>",
            "too_many_thoughts",
        ),  # fmt: skip
        ("<think>a</think> <think>b</think> The river rose. <think>c</think>", "low_coverage"),
    ],
)
def test_build_rejects_with_reason(qwen_tokenizer, reply, reason):
    with pytest.raises(Rejected) as err:
        build_augmented(RAW, reply, qwen_tokenizer, LIMITS)
    assert err.value.reason == reason


def test_truncation_drops_a_thought_cut_open(qwen_tokenizer):
    ids = qwen_tokenizer.encode(normalise_tags(GOOD), add_special_tokens=False)
    third_open = [i for i, t in enumerate(ids) if t == 151667][2]
    limits = AugmentLimits(max_augmented_tokens=third_open + 3, min_thoughts=2, min_augmented_tokens=8)
    fields = build_augmented(RAW, GOOD, qwen_tokenizer, limits)
    assert fields["truncated"] and fields["think_count"] == 2
    assert fields["interleaved_thinking_ids"] == ids[:third_open]
    assert is_balanced(fields["augmented_text"])
    with pytest.raises(Rejected, match="too_few_thoughts_after_truncation"):
        build_augmented(RAW, GOOD, qwen_tokenizer, AugmentLimits(max_augmented_tokens=third_open + 3))
    with pytest.raises(Rejected, match="too_short"):
        build_augmented(RAW, GOOD, qwen_tokenizer, AugmentLimits(min_augmented_tokens=10_000))


def test_extract_reply_formats():
    assert extract_augmented_text("```text\nA <think>b</think>\n```") == "A <think>b</think>"
    assert extract_augmented_text('{"augmented_text": " X "}') == "X"
    assert extract_augmented_text("{not json") == "{not json"
    assert extract_augmented_text("Here you go:\n```\nA <think>b</think>\n```\nDone.") == "A <think>b</think>"


def test_prompt_package_data_and_braces(tmp_path):
    prompt = load_prompt("interleaved_thinking_v1")
    assert re.fullmatch(r"interleaved_thinking_v1@[0-9a-f]{12}", prompt.version)
    msgs = prompt.messages("f(x) = {x: 1} and {{RAW_TEXT}}?")
    assert msgs[0]["role"] == "system" and "<think>" in msgs[0]["content"]
    assert msgs[1]["content"].endswith("f(x) = {x: 1} and {{RAW_TEXT}}?")
    bad = tmp_path / "bad.txt"
    bad.write_text("[system]\nhi\n[user]\nno placeholder\n")
    with pytest.raises(ValueError, match="exactly once"):
        load_prompt(str(bad))
    with pytest.raises(FileNotFoundError, match="interleaved_thinking_v1"):
        load_prompt("no_such_prompt")


def _examples(tokenizer, n: int, same_text: bool = False) -> list[dict]:
    rows = []
    for i in range(n):
        text = RAW if same_text else RAW.replace("river", f"river{i}").replace("night", f"night {i}")
        ids = tokenizer.encode(text, add_special_tokens=False)
        rows.append(
            {
                "id": f"ex{i:03d}",
                "prefix_ids": ids[:20],
                "suffix_ids": ids[20:],
                "split": "train",
                "source_sha": f"sha{i:03d}",
                "source_id": f"doc{i}",
            }
        )
    return rows


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _ids_exactly_once(output: Path, rejects: Path, expected: set[str]) -> tuple[list[dict], list[dict]]:
    out = read_rows(output, AUGMENTED_SCHEMA).rows if output.exists() else []
    rej = read_rows(rejects, REJECT_SCHEMA).rows if rejects.exists() and rejects.stat().st_size else []
    ids = [r["id"] for r in out] + [r["id"] for r in rej]
    assert sorted(ids) == sorted(expected), "every input id exactly once across output and rejects"
    return out, rej


def test_offline_rule_on_embedded_examples(qwen_tokenizer, tmp_path, embedded):
    from trl_ext.data.chunking import DOCUMENT_SCHEMA, ChunkConfig, chunk_documents

    docs = read_rows(embedded.corpus_path, DOCUMENT_SCHEMA).rows[:6]
    rows, _ = chunk_documents(docs, qwen_tokenizer, ChunkConfig())
    out, rej = tmp_path / "aug.jsonl", tmp_path / "rej.jsonl"
    summary = asyncio.run(
        augment_file(rows, out, rej, OfflineRuleAugmenter(), qwen_tokenizer, progress=False)
    )
    assert summary.accepted == len(rows) == 6 and summary.rejected == 0
    got, _ = _ids_exactly_once(out, rej, {r["id"] for r in rows})
    for row in got:
        assert row["augmenter"] == "offline_rule_v1" and row["teacher_backend"] == "offline"
        assert 3 <= row["think_count"] == count_thoughts(row["augmented_text"]) <= 6
        assert len(row["raw_chunk_ids"]) == 512 and len(row["interleaved_thinking_ids"]) <= 768
        assert row["raw_text"] == qwen_tokenizer.decode(row["raw_chunk_ids"], skip_special_tokens=True)
        assert row["raw_word_coverage"] == 1.0
    # the rule is deterministic
    assert OfflineRuleAugmenter().insert_thoughts(RAW) == OfflineRuleAugmenter().insert_thoughts(RAW)


def test_teacher_real_server_rejects_recorded_nothing_lost(qwen_tokenizer, tmp_path, openai_server):
    """The CLI path against a real server; the tiny random model cannot follow the prompt, so every
    row must end up rejected with a reason (and the request format must be accepted)."""
    rows = _examples(qwen_tokenizer, 3)
    src, out = tmp_path / "examples.jsonl", tmp_path / "aug.jsonl"
    _write_jsonl(src, rows)
    args = AugmentArguments(
        input=str(src), output=str(out), base_urls=[openai_server], max_tokens=24, attempts=2,
        min_augmented_tokens=8, max_retries=1, timeout_s=60, progress=False,
    )  # fmt: skip
    summary = run(args)
    assert summary.processed == 3 and summary.accepted == 0 and summary.teacher_requests == 6
    _, rejected = _ids_exactly_once(out, tmp_path / "aug.rejects.jsonl", {r["id"] for r in rows})
    for r in rejected:
        assert r["retryable"] is False, r  # the server answered: these are data rejects, not outages
        assert r["attempts"] == 2 and len(r["attempt_reasons"]) == 2 and r["reply_excerpt"] is not None
        assert r["reason"] in {
            "too_few_thoughts",
            "low_coverage",
            "unknown_tags",
            "unbalanced_tags",
            "empty_reply",
        }
    assert json.loads((tmp_path / "aug.summary.json").read_text())["rejected"] == 3


def test_faults_garbage_timeout_then_resume_retries_outages(qwen_tokenizer, tmp_path, fault_server):
    rows = _examples(qwen_tokenizer, 1, same_text=True)
    out, rej = tmp_path / "aug.jsonl", tmp_path / "rej.jsonl"
    prompt = load_prompt("interleaved_thinking_v1")

    async def go(url, retries):
        client = OpenAICompatibleClient(url, timeout_s=0.5, max_retries=retries, backoff_s=0.01)
        try:
            aug = TeacherAugmenter(client, prompt, {}, max_tokens=64)
            return await augment_file(rows, out, rej, aug, qwen_tokenizer, LIMITS, attempts=2, progress=False)
        finally:
            await client.aclose()

    # garbage body, then a timeout: the client gives up -> a retryable reject, not a lost row
    down = fault_server([Fault("garbage"), Fault("timeout", delay_s=1.5)])
    summary = asyncio.run(go(down, retries=1))
    assert summary.rejected == 1 and summary.reject_reasons == {"teacher_error": 1}
    (reject,) = read_rows(rej, REJECT_SCHEMA).rows
    assert reject["retryable"] and "timeout" in reject["detail"]

    # resume against a healthy teacher: a 500 is retried by the client, the outage row is redone
    up = fault_server([Fault("http500"), Fault("ok", text="Sure!\n```\n" + GOOD + "\n```")])
    summary = asyncio.run(go(up, retries=2))
    assert summary.retried_after_teacher_error == 1 and summary.accepted == 1
    got, rejected = _ids_exactly_once(out, rej, {"ex000"})
    assert rejected == [] and got[0]["think_count"] == 3
    assert "Sure" not in got[0]["augmented_text"] and "```" not in got[0]["augmented_text"]
    assert got[0]["teacher_model"] == "default" and got[0]["prompt_version"] == prompt.version

    # a third run finds nothing to do and sends no request
    requests_before = len(fault_server.servers[-1].requests)
    summary = asyncio.run(go(up, retries=0))
    assert summary.already_done == 1 and summary.processed == 0
    assert len(fault_server.servers[-1].requests) == requests_before


def test_resume_rejects_mixed_config_and_repairs_torn_line(qwen_tokenizer, tmp_path):
    rows = _examples(qwen_tokenizer, 4)
    out, rej = tmp_path / "aug.jsonl", tmp_path / "rej.jsonl"
    asyncio.run(
        augment_file(rows[:2], out, rej, OfflineRuleAugmenter(), qwen_tokenizer, LIMITS, progress=False)
    )
    with open(out, "a") as handle:  # a kill in the middle of writing row 3
        handle.write('{"id": "ex002", "source_sha": "sha0')
    summary = asyncio.run(
        augment_file(rows, out, rej, OfflineRuleAugmenter(), qwen_tokenizer, LIMITS, progress=False)
    )
    assert summary.already_done == 2 and summary.accepted == 2
    _ids_exactly_once(out, rej, {r["id"] for r in rows})

    class OtherPrompt(OfflineRuleAugmenter):
        prompt_version = "something_else"

    with pytest.raises(RowFileError, match="prompt_version.*new --output"):
        asyncio.run(augment_file(rows, out, rej, OtherPrompt(), qwen_tokenizer, LIMITS, progress=False))


def test_cli_errors_name_the_flag(tmp_path):
    args = AugmentArguments(input=str(tmp_path / "x.jsonl"), output=str(tmp_path / "o.jsonl"))
    with pytest.raises(ValueError, match="--base_urls"):
        run(args)


@pytest.mark.slow
def test_kill_anywhere_then_resume_loses_and_duplicates_nothing(qwen_tokenizer, tmp_path, fault_server):
    """SIGKILL a real CLI run mid-way (rows in flight), re-run, compare with an uninterrupted run."""
    rows = _examples(qwen_tokenizer, 16, same_text=True)
    src = tmp_path / "examples.jsonl"
    _write_jsonl(src, rows)
    url = fault_server([Fault("ok", text=GOOD, delay_s=0.25)])
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}

    def cli(output: Path) -> list[str]:
        return [sys.executable, "-m", "trl_ext.data.augment", "--input", str(src), "--output", str(output),
                "--base_urls", url, "--max_concurrency", "2", "--min_augmented_tokens", "8",
                "--progress", "false"]  # fmt: skip

    killed = tmp_path / "killed.jsonl"
    proc = subprocess.Popen(cli(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not killed.exists() or killed.read_text().count("\n") < 3):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = killed.read_text().count("\n")
    assert 3 <= partial < 16, "the kill must land mid-run"
    subprocess.run(cli(killed), env=env, check=True, capture_output=True)

    clean = tmp_path / "clean.jsonl"
    subprocess.run(cli(clean), env=env, check=True, capture_output=True)
    resumed, _ = _ids_exactly_once(killed, killed.with_name("killed.rejects.jsonl"), {r["id"] for r in rows})
    reference = read_rows(clean, AUGMENTED_SCHEMA).rows
    assert sorted(resumed, key=lambda r: r["id"]) == sorted(reference, key=lambda r: r["id"])


def test_raw_chunk_uses_prefix_then_suffix(qwen_tokenizer):
    row = {"prefix_ids": [1, 2, 3], "suffix_ids": [4, 5, 6]}
    ids, _ = raw_chunk(row, qwen_tokenizer, 4)
    assert ids == [1, 2, 3, 4]


def test_cli_fails_when_no_row_is_accepted(qwen_tokenizer, tmp_path, capsys):
    """Every row rejected (here: a token floor no 512-token chunk reaches) is an error exit, naming
    the rejects file, not an exit 0 with a warning."""
    from trl_ext.data.augment import main

    src, out = tmp_path / "examples.jsonl", tmp_path / "aug.jsonl"
    _write_jsonl(src, _examples(qwen_tokenizer, 2))
    argv = ["--input", str(src), "--output", str(out), "--teacher", "offline", "--progress", "false"]
    with pytest.raises(SystemExit, match=r"no row was accepted \(2 processed, 2 rejected.*aug.rejects.jsonl"):
        main([*argv, "--min_augmented_tokens", "100000"])
    out.unlink(missing_ok=True)
    (tmp_path / "aug.rejects.jsonl").unlink()
    assert main([*argv, "--min_augmented_tokens", "8"]).accepted == 2  # the same rows, accepted: exit 0
