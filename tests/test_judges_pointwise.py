"""Pointwise judges: strict parsing, templates, invalid accounting, a real server and injected faults."""

import asyncio
import json

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
from trl_ext.judges.base import available_prompt_templates, parse_template, prefix_from_prompt
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
    judge = LLMJudge.pointwise(base_url=openai_server, max_tokens=8, max_concurrency=4, invalid_log_path=log)
    scores = judge(
        prompts=["The jury said <think>"] * 3,
        completions=["it was fair."] * 3,
        reference=["no evidence."] * 3,
    )
    assert len(scores) == 3
    assert judge.client.stats.succeeded == 3 and judge.client.stats.failed == 0
    for score, verdict in zip(scores, judge.last_verdicts):
        assert (score is None) == (not verdict.valid)
        if not verdict.valid:
            assert verdict.error.startswith("unparseable") and verdict.raw is not None
    assert judge.stats.calls == 3 and judge.stats.invalid == sum(s is None for s in scores)
    if judge.stats.invalid:
        logged = [json.loads(line) for line in log.read_text().splitlines()]
        assert len(logged) == judge.stats.invalid and all("raw" in r for r in logged)


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

    async def inside_loop():
        return judge.judge(["p" * 50], ["c" * 50], ["r" * 50])  # sync call from async code

    assert [v.score for v in asyncio.run(inside_loop())] == [1.0]
    prompt = fault_server.servers[0].requests[0]["prompt"]
    assert "p" * 10 in prompt and "p" * 11 not in prompt and fault_server.servers[0].requests[0]["seed"] == 3


def test_verdict_and_run_sync_helpers():
    bad = JudgeVerdict.invalid("call_failed: x", raw=None)
    assert not bad.valid and bad.score is None

    async def boom():
        raise RuntimeError("inner")

    with pytest.raises(RuntimeError, match="inner"):
        run_sync(boom())
    with pytest.raises(ValueError, match="base_url"):
        LLMJudge()
