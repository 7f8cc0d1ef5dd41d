"""Pairwise judges: parsing, injected server faults, a real local server, the offline likelihood judge."""

from __future__ import annotations

import json

import pytest
from fault_server import Fault

from trl_ext.client import OpenAICompatibleClient
from trl_ext.judges.pairwise import (
    LikelihoodPairwiseJudge,
    LLMPairwiseJudge,
    LLMSafetyJudge,
    factuality_judge,
    parse_pairwise_conclusion,
    winner_of,
)
from trl_ext.pairing import plan_comparisons, pool_rng, score_pool


@pytest.mark.parametrize(
    "reply,expected",
    [
        ("Option 2 is fluent.\nConclusion: Option 2", 2),
        ("conclusion: option 1", 1),
        ("**Conclusion:** **Option 1**", 1),
        ("<think>Conclusion: Option 2? no</think>Both ok.\nConclusion: Option 1", 1),
        ("Conclusion: Option 1\nConclusion: Option 2", None),  # conflicting: invalid, not 'the last one'
        ("I prefer Option 2.", None),  # no fixed conclusion line
        ("Conclusion: Option 3", None),
        ("", None),
        # an unclosed reasoning block is the judge thinking aloud, not a verdict (old code: option 1)
        ("<think>Both read well. Conclusion: Option 1 would be wrong because", None),
        ("Option 2 is fine.</think>Conclusion: Option 2", 2),  # the template opened the block
    ],
)
def test_parse_conclusion(reply, expected):
    winner, error = parse_pairwise_conclusion(reply)
    assert winner == expected
    assert (error is None) == (expected is not None)


def _judge(url, **kw):
    kw.setdefault("max_concurrency", 1)
    kw.setdefault("timeout_s", 2.0)
    kw.setdefault("max_retries", 1)
    return LLMPairwiseJudge(url, backoff_s=0.01, **kw)


def test_injected_faults_become_invalid_never_a_winner(fault_server):
    url = fault_server(
        [
            Fault("ok", text="Both are fine but 2 is clearer.\nConclusion: Option 2"),
            Fault("http500"),
            Fault("http500"),  # call 2: fails on both attempts
            Fault("ok", text="I cannot decide between them."),  # call 3: unparseable
            Fault("garbage"),  # call 4: a malformed body is retried ...
            Fault("ok", text="Conclusion: Option 1"),  # ... and succeeds; call 5 gets this too
        ]
    )
    judge = _judge(url)
    verdicts = judge.judge_pairs(["p"] * 5, ["a"] * 5, ["b"] * 5)
    assert [winner_of(v) for v in verdicts] == [2, None, None, 1, 1]
    assert verdicts[1].error.startswith("call_failed") and verdicts[2].error.startswith("unparseable")
    assert verdicts[2].raw == "I cannot decide between them."
    assert (
        judge.stats.calls == 5 and judge.stats.invalid == 2 and judge.stats.invalid_rate == pytest.approx(0.4)
    )
    assert set(judge.stats.reasons) == {"call_failed", "unparseable"}
    # the request carries the rendered quality prompt as one user message
    sent = fault_server.servers[0].requests[0]
    assert (
        sent["messages"][0]["role"] == "user" and "Option 1:\n<<<\na\n>>>" in sent["messages"][0]["content"]
    )
    assert sent["temperature"] == 0.7 and sent["top_p"] == 0.6


def test_truncated_and_unclosed_replies_are_invalid_and_logged(fault_server, tmp_path):
    url = fault_server(
        [
            Fault("ok", text="<think>Both read well. Conclusion: Option 1 would be", finish_reason="length"),
            Fault("ok", text="Option 1 is clearer.\nConclusion: Option 1\nBut", finish_reason="length"),
            Fault("ok", text="<think>Both read well. Conclusion: Option 1 would be wrong"),
            Fault("ok", text="Conclusion: Option 2"),
        ]
    )
    log = tmp_path / "pairwise_invalid.jsonl"
    judge = _judge(url, max_retries=0, invalid_log_path=log)
    verdicts = judge.judge_pairs(["p"] * 4, ["a"] * 4, ["b"] * 4)
    assert [winner_of(v) for v in verdicts] == [None, None, None, 2]
    assert [v.reason for v in verdicts] == ["truncated", "truncated", "unclosed_reasoning", None]
    assert judge.stats.reasons == {"truncated": 2, "unclosed_reasoning": 1}
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["reason"], r["raw"], r["index"]) for r in logged] == [
        (v.reason, v.raw, i) for i, v in enumerate(verdicts[:3])
    ]
    assert all(r["option_1"] == "a" and r["judge"] == "pairwise_quality" for r in logged)


def test_prefix_keeps_its_end_and_options_their_start(fault_server):
    url = fault_server([Fault("ok", text="Conclusion: Option 1")])
    judge = _judge(url, max_field_chars=8)
    judge.judge_pairs(["x" * 40 + "PREFEND"], ["AAA" + "a" * 40], ["BBB" + "b" * 40])
    prompt = fault_server.servers[0].requests[0]["messages"][-1]["content"]
    assert "xPREFEND" in prompt and "xx" not in prompt  # old code sent the prefix's first 8 chars
    assert "AAAaaaaa" in prompt and "a" * 6 not in prompt and "BBBbbbbb" in prompt and "b" * 6 not in prompt


def test_timeout_and_truncated_json_are_invalid(fault_server):
    url = fault_server([Fault("timeout", delay_s=1.5), Fault("truncated_json")])
    judge = _judge(url, timeout_s=0.5, max_retries=0)
    first, second = judge.judge_pairs(["p", "p"], ["a", "a"], ["b", "b"])
    assert first.score is None and "timeout" in first.error
    assert second.score is None and "malformed" in second.error


def test_always_option_one_judge_is_cancelled_by_the_swap(fault_server):
    """A maximally position-biased judge: each candidate's score is exactly the share of its calls in which it
    was shown first, which the seeded swap makes 1/2 in expectation (and the pool mean is exactly 1/2)."""
    url = fault_server([Fault("ok", text="Conclusion: Option 1")])
    judge = _judge(url, max_concurrency=4, max_retries=3)  # the scripted server has a small listen backlog
    n = 17
    plan = plan_comparisons(n, pool_rng(0, 0, 0, "p"))
    verdicts = judge.judge_pairs(
        ["p"] * len(plan), [str(c.option_1) for c in plan], [str(c.option_2) for c in plan]
    )
    assert len(verdicts) == len(plan) == 136 and len(fault_server.servers[0].requests) == 136
    pool = score_pool(n, plan, [winner_of(v) for v in verdicts])
    for k in range(n):
        shown_first = sum(c.option_1 == k for c in plan) / sum(k in (c.i, c.j) for c in plan)
        assert pool.scores[k] == pytest.approx(shown_first)
    assert sum(pool.scores) / n == pytest.approx(0.5)


def test_template_fields_are_checked(tmp_path, fault_server):
    bad = tmp_path / "bad.txt"
    bad.write_text("[user]\nWhich is better, {{option_1}} or {{candidate}}?\n")
    with pytest.raises(ValueError, match="option_2"):
        LLMPairwiseJudge("http://127.0.0.1:9", prompt=str(bad))
    with pytest.raises(ValueError, match="base_url"):
        LLMPairwiseJudge()


def test_safety_and_factuality_rubrics(fault_server):
    url = fault_server(
        [
            Fault("ok", text='{"score": 0.5}'),
            Fault("ok", text='{"score": 0}'),
            Fault("ok", text='{"score": 0.7}'),
        ]
    )
    fact = factuality_judge(url, max_concurrency=1, max_retries=0)
    scores = fact(prompts=["p"] * 3, completions=["c"] * 3, reference=["r"] * 3)
    assert scores == [0.5, 0.0, None]  # 0.7 is not one of no/possible/definite
    assert fact.stats.invalid == 1

    url = fault_server([Fault("ok", text='{"score": 1}'), Fault("ok", text="unsafe!")])
    safety = LLMSafetyJudge(url, max_concurrency=1, max_retries=0)
    assert safety(prompts=["PREFIX-MARK", "PREFIX-MARK"], completions=["hello", "world"]) == [1.0, None]
    sent = fault_server.servers[-1].requests[0]["messages"]
    assert "hello" in sent[-1]["content"] and "PREFIX-MARK" not in sent[-1]["content"]  # candidate alone


@pytest.mark.slow
def test_against_real_local_server(openai_server):
    """A real OpenAI-compatible server (transformers serve, tiny random model): requests succeed, the random
    model's replies are cut at 8 tokens or have no conclusion line, so every verdict is invalid with its raw
    reply kept. A client passed in is shared: the judge leaves closing it to its owner."""
    client = OpenAICompatibleClient(openai_server, max_concurrency=4, timeout_s=120)
    judge = LLMPairwiseJudge(client=client, max_tokens=8, temperature=0.0)
    verdicts = judge.judge_pairs(["The cat sat"] * 3, ["on the mat.", "down.", "still."], ["up.", "x", "y"])
    assert client.stats.succeeded == 3 and client.stats.failed == 0
    assert all(
        v.score is None and v.reason in {"truncated", "unparseable"} and v.raw is not None for v in verdicts
    )
    assert judge.stats.invalid == 3 and all(v.latency_s > 0 for v in verdicts)
    pool = client.pool
    judge.close()
    assert client.pool is pool and not pool.is_closed
    client.close()
    assert pool.is_closed


@pytest.fixture(scope="module")
def likelihood_judge(tiny_model_dir, qwen_tokenizer):
    return LikelihoodPairwiseJudge(str(tiny_model_dir), qwen_tokenizer)


def test_likelihood_judge_has_no_position_or_pivot_preference(likelihood_judge):
    prefixes = [
        "The river flows",
        "In the kitchen, the cook",
        "The election results",
        "Stars are made of",
        "The old library held",
        "After the storm, the village",
    ]
    real = [
        " to the sea through the valley.",
        " chopped onions for the soup.",
        " were announced at midnight.",
        " hot plasma held together by gravity.",
        " thousands of rare books.",
        " began to rebuild its roofs.",
    ]
    other = real[1:] + real[:1]  # another document's continuation
    forward = likelihood_judge.judge_pairs(prefixes, real, other)
    backward = likelihood_judge.judge_pairs(prefixes, other, real)
    for f, b in zip(forward, backward):  # swapping the options swaps the verdict: no position preference
        assert winner_of(f) in (1, 2) and winner_of(b) == 3 - winner_of(f)
    real_wins = sum(winner_of(v) == 1 for v in forward)
    assert 0 < real_wins < len(prefixes)  # neither "always the original" nor "never the original"
    ties_before = likelihood_judge.stats.reasons["tie"]
    tie, empty = likelihood_judge.judge_pairs(["x", "x"], ["same text", ""], ["same text", "something"])
    assert tie.score is None and tie.error.startswith("tie")
    assert winner_of(empty) == 2
    assert likelihood_judge.stats.reasons["tie"] == ties_before + 1  # ties are counted by reason
