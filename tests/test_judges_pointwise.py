"""Pointwise judges: strict parsing, templates, invalid accounting, a real server and injected faults."""

import asyncio
import json
import socket
import threading
import time

import pytest
from fault_server import Fault

from trl_ext.judges import (
    JudgeVerdict,
    LLMJudge,
    PointwiseJudge,
    ReferenceOverlapJudge,
    load_prompt_template,
    parse_json_field,
    run_sync,
)
from trl_ext.judges.base import answer_text, available_prompt_templates, parse_template, prefix_from_prompt
from trl_ext.judges.llm import CLIP_SIDES, clip
from trl_ext.judges.offline import overlap_f1


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ('{"score": 1}', 1),
        ('{"score":0}', 0),
        ('Reasoning first. Final: {"score": 1}', 1),
        ('<think>maybe {"score": 0}</think>{"score": 1}', 1),  # a reasoning judge's draft is ignored
        ('{"score": 1.0}', 1),
        ('{"score": 1} and again {"score": 1}', 1),
        ('the template opened the block {"score": 0}</think>{"score": 1}', 1),
        ('<thinking>{"score": 0}</thinking> <REASONING>x</REASONING>{"score": 1}', 1),
    ],
)
def test_strict_parsing_accepts(reply, score):
    assert parse_json_field(reply, "score", (0, 1)) == (score, None)


@pytest.mark.parametrize(
    "reply",
    ["", "score: 1", "{'score': 1}", '{"score": 2}', '{"score": true}', '{"score": "1"}', '{"verdict": 1}',
     '{"score": 1} {"score": 0}', '{"score": 1'],
)  # fmt: skip
def test_strict_parsing_rejects_everything_else(reply):
    value, error = parse_json_field(reply, "score", (0, 1))
    assert value is None and error.startswith("unparseable")


@pytest.mark.parametrize(
    "reply",
    [
        '<think>The candidate matches. {"score": 1}, but',  # cut inside the thought
        '<think>done</think>{"score": 1}<think>on second thought',  # a new block never closed
        '<thinking>{"score": 1}',
    ],
)
def test_an_answer_inside_an_unclosed_reasoning_block_is_invalid(reply):
    """Old code left an unclosed <think> in place and read the score inside it."""
    assert parse_json_field(reply, "score", (0, 1)) == (None, answer_text(reply)[1])
    assert answer_text(reply)[1].startswith("unclosed_reasoning")


def test_packaged_template_and_field_checks(tmp_path):
    assert "rlmt_reference_match" in available_prompt_templates()
    template = load_prompt_template("rlmt_reference_match")
    assert template.fields == {"prefix", "reference", "candidate"} and template.system
    messages = template.messages(prefix="PFX", reference="REF", candidate="CAND")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert (
        all(x in messages[1]["content"] for x in ("PFX", "REF", "CAND"))
        and "{{" not in messages[1]["content"]
    )
    with pytest.raises(KeyError, match="missing \\['reference'\\]"):
        template.render(prefix="a", candidate="c")
    with pytest.raises(FileNotFoundError, match="rlmt_reference_match"):
        load_prompt_template("no_such_template")
    custom = tmp_path / "mine.txt"
    custom.write_text("# comment\nJudge {{candidate}} vs {{reference}} after {{prefix}}.\n")
    assert load_prompt_template(custom).fields == {"candidate", "reference", "prefix"}
    with pytest.raises(ValueError, match="no \\[user\\]"):
        parse_template("[system]\nonly system\n", "bad")


def test_offline_judge_is_deterministic_overlap():
    judge = ReferenceOverlapJudge(threshold=0.5)
    assert isinstance(judge, PointwiseJudge)
    # candidate words {the, cat, sat}, reference {the, cat, ran, away}: P=2/3, R=2/4 → F1=4/7
    assert overlap_f1("the cat sat", "the cat ran away") == pytest.approx(4 / 7)
    assert judge(["p <think>"], ["the cat sat"], reference=["the cat ran away"]) == [1.0]
    assert judge(["p"], ["a dog"], reference=["the cat ran away"]) == [0.0]
    assert ReferenceOverlapJudge(threshold=None).score("the cat sat", "the cat ran away") == pytest.approx(
        4 / 7
    )
    assert judge.stats.calls == 2 and judge.stats.invalid == 0
    with pytest.raises(KeyError, match="'reference' column"):
        judge(["p"], ["c"])


def test_prefix_from_prompt_strips_the_open_tag_and_thoughts():
    assert prefix_from_prompt("Intro <think>old</think> more text <think>") == "Intro more text"


def test_llm_judge_against_a_real_server(openai_server, tmp_path):
    """A real OpenAI-compatible server (tiny random model): the transport works end to end and its
    replies, which are not a verdict, are counted invalid with the raw reply kept — never a score."""
    log = tmp_path / "invalid.jsonl"
    judge = LLMJudge.pointwise(base_url=openai_server, max_tokens=4, max_concurrency=2, invalid_log_path=log)
    judge.wait_until_ready(timeout_s=30)
    pools = set()
    for _ in range(3):  # three trainer steps
        scores = judge(prompts=["The jury said <think>"] * 2, completions=["it was fair."] * 2,
                       reference=["no evidence."] * 2)  # fmt: skip
        pools.add(id(judge.client.pool))
    assert len(scores) == 2
    assert judge.client.stats.succeeded == 6 and judge.client.stats.failed == 0
    # One connection pool for the whole run (old code opened one per call), whose keep-alive
    # connections are reused across steps: fewer connections than requests.
    assert len(pools) == 1 and judge.client.stats.pools_opened == 1
    assert 1 <= judge.client.stats.connections_opened < 6
    for score, verdict in zip(scores, judge.last_verdicts):
        assert (score is None) == (not verdict.valid)
        if not verdict.valid:  # a random model rarely stops within 8 tokens: mostly truncated
            assert verdict.reason in {"unparseable", "truncated"} and verdict.raw is not None
    assert judge.stats.calls == 6 and judge.stats.invalid == sum(judge.stats.reasons.values())
    if judge.stats.invalid:
        logged = [json.loads(line) for line in log.read_text().splitlines()]
        assert len(logged) == judge.stats.invalid and all("raw" in r and "reason" in r for r in logged)
    loop_threads = len(_client_threads())
    judge.close()
    assert judge.client.pool is None and len(_client_threads()) == loop_threads - 1


def _client_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("trl_ext-client") and t.is_alive()]


def test_a_reply_cut_by_the_token_limit_is_invalid(fault_server, tmp_path):
    """finish_reason == "length": invalid even when a score appears before the cut (old code: 1.0)."""
    url = fault_server(
        [
            Fault("ok", text='<think>The candidate matches. {"score": 1}, but', finish_reason="length"),
            Fault("ok", text='{"score": 1} because the candidate', finish_reason="length"),
            Fault("ok", text='<think>The candidate matches. {"score": 1}, but', finish_reason="stop"),
            Fault("ok", text='<think>ok</think>{"score": 1}', finish_reason="stop"),
        ]
    )
    log = tmp_path / "invalid.jsonl"
    judge = LLMJudge(url, max_concurrency=1, max_retries=0, invalid_log_path=log)
    verdicts = judge.judge(["p"] * 4, ["c"] * 4, ["r"] * 4)
    assert [v.score for v in verdicts] == [None, None, None, 1.0]
    assert [v.reason for v in verdicts[:3]] == ["truncated", "truncated", "unclosed_reasoning"]
    assert judge.stats.reasons == {"truncated": 2, "unclosed_reasoning": 1}
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["reason"] for r in logged] == ["truncated", "truncated", "unclosed_reasoning"]
    assert logged[0]["raw"].endswith(", but") and logged[0]["candidate"] == "c"


def test_llm_judge_faults_are_invalid_never_scores(fault_server):
    url = fault_server(
        [
            Fault("ok", text='{"score": 1}'),
            Fault("ok", text="I think it is good"),  # unparseable
            Fault("garbage"),  # retried once, then…
            Fault("garbage"),  # …call failed
            Fault("http500"),
            Fault("ok", text='{"score": 0}'),  # recovered after a retry
            Fault("timeout", delay_s=2.0),
        ]
    )
    judge = LLMJudge(url, max_concurrency=1, max_retries=1, backoff_s=0.01, timeout_s=0.5)
    verdicts = judge.judge(["p"] * 5, ["c"] * 5, ["r"] * 5)
    assert [v.score for v in verdicts] == [1.0, None, None, 0.0, None]
    assert verdicts[1].error.startswith("unparseable") and verdicts[1].raw == "I think it is good"
    assert verdicts[2].error.startswith("call_failed: malformed")
    assert verdicts[4].error.startswith("call_failed: timeout")
    assert judge.stats.invalid == 3 and judge.stats.reasons == {"unparseable": 1, "call_failed": 2}
    assert judge.stats.invalid_rate == pytest.approx(0.6)
    request = fault_server.servers[0].requests[0]
    assert request["temperature"] == 0.7 and request["top_p"] == 0.6 and request["max_tokens"] == 64
    assert request["messages"][-1]["role"] == "user"


def test_llm_judge_clips_fields_and_runs_inside_an_event_loop(fault_server):
    url = fault_server([Fault("ok", text='{"score": 1}')])
    judge = LLMJudge(url, max_field_chars=10, mode="completion", request_extra={"seed": 3})

    async def inside_loop():  # sync call from async code
        return judge.judge(["p" * 50 + "PEND"], ["CSTART" + "c" * 50], ["RSTART" + "r" * 50])

    assert [v.score for v in asyncio.run(inside_loop())] == [1.0]
    prompt = fault_server.servers[0].requests[0]["prompt"]
    assert fault_server.servers[0].requests[0]["seed"] == 3
    # The prefix keeps its END (the text next to the continuation; old code kept its start) ...
    assert "p" * 6 + "PEND" in prompt and "p" * 7 not in prompt
    # ... the candidate and the reference keep their START.
    assert "CSTART" + "c" * 4 in prompt and "c" * 5 not in prompt
    assert "RSTART" + "r" * 4 in prompt and "r" * 5 not in prompt
    judge.close()


def test_clip_policy_is_explicit_per_field():
    assert CLIP_SIDES == {
        "prefix": "keep_end",
        "candidate": "keep_start",
        "reference": "keep_start",
        "option_1": "keep_start",
        "option_2": "keep_start",
    }
    assert clip("abcdef", 4, "keep_end") == "cdef" and clip("abcdef", 4, "keep_start") == "abcd"
    assert clip("abc", 4, "keep_end") == "abc" and clip("abcdef", None, "keep_end") == "abcdef"
    with pytest.raises(ValueError, match="max_field_chars"):
        LLMJudge("http://127.0.0.1:9", max_field_chars=0)


def test_wait_until_ready_names_a_dead_url_fast():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    judge = LLMJudge([f"http://127.0.0.1:{port}/v1"])
    start = time.perf_counter()
    with pytest.raises(TimeoutError, match=f"http://127.0.0.1:{port} not ready.*ConnectError"):
        judge.wait_until_ready(timeout_s=0.5, poll_s=0.1)
    assert time.perf_counter() - start < 3.0


def test_judge_closes_and_reopens_its_pool(fault_server):
    url = fault_server([Fault("ok", text='{"score": 1}')])
    with LLMJudge(url, max_concurrency=2) as judge:
        judge.judge(["p"], ["c"], ["r"])
        first = judge.client.pool
        judge.judge(["p"], ["c"], ["r"])
        assert judge.client.pool is first and first is not None and judge.client.stats.pools_opened == 1
    assert first.is_closed and judge.client.pool is None
    assert judge.judge(["p"], ["c"], ["r"])[0].score == 1.0  # a call after close opens a fresh pool
    assert judge.client.stats.pools_opened == 2
    judge.close()


def test_verdict_and_run_sync_helpers():
    bad = JudgeVerdict.invalid("call_failed: x", raw=None)
    assert not bad.valid and bad.score is None

    async def boom():
        raise RuntimeError("inner")

    with pytest.raises(RuntimeError, match="inner"):
        run_sync(boom())
    with pytest.raises(ValueError, match="base_url"):
        LLMJudge()
