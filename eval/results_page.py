"""``python -m eval results-page``: one markdown page of every result found under ``outputs/``.

The page is rendered from the files the recipes and eval commands write (never from numbers typed
by hand), in the table formats of the reference run's records (docs/reference_results.md), so a run
can be read and compared with the reference run without collecting numbers from a dozen JSON files:

* Phase 3 — ``outputs/phase3/metrics.json`` and the stage check ``outputs/eval/continuation/summary.json``;
* SFT — ``outputs/{raw_base,think_base,think_phase3}/metrics.json``;
* RLMT — ``outputs/{think_base_rlmt,think_phase3_rlmt}/metrics.json``;
* reward gate and thought-use probe — ``outputs/eval/{reward_gate,thought_probe}/summary.json``;
* reasoning eval — the per-sample rows under ``outputs/eval/<arm>/``, through :mod:`eval.report`.

Every section names its source files; a missing input is one "not run (expected …)" line, so the
page can be regenerated at any point of the pipeline. The top of the page says which model and
data the numbers come from, flags runs of the embedded tiny random model as pipeline checks and
runs of the embedded real SmolLM2 model as demo-scale measurements.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PHASE3_ARM = "phase3"
SFT_ARMS = ("raw_base", "think_base", "think_phase3")
RLMT_ARMS = ("think_base_rlmt", "think_phase3_rlmt")
TRAINED_ARMS = (PHASE3_ARM, *SFT_ARMS, *RLMT_ARMS)
NA = "n/a"


# --------------------------------------------------------------------------------------- formatting


def fmt(value: Any, spec: str = ".6f", none: str = NA) -> str:
    """One table cell in the reference run's precision; ``none`` for a null/NaN value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return none
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if spec == ",":
        return f"{int(round(value)):,}"
    return format(value, spec)


def signed(value: Any) -> str:
    return fmt(value, "+.6f")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


@dataclass(frozen=True)
class Column:
    """A table column read from one key of a metrics/summary record."""

    title: str
    key: str
    spec: str = ".6f"
    none: str = NA  # how a null value reads (a key that is absent is always n/a)


def record_rows(
    records: Mapping[str, Mapping], columns: Sequence[Column], label: Callable[[str, Mapping], str]
) -> tuple[list[list[str]], dict[str, list[str]]]:
    """Table rows (one per record) and, per record, the keys it lacks (shown as ``n/a``)."""
    rows, missing = [], {}
    for name, record in records.items():
        lacking = [c.key for c in columns if c.key not in record]
        if lacking:
            missing[name] = lacking
        cells = [fmt(record[c.key], c.spec, c.none) if c.key in record else NA for c in columns]
        rows.append([label(name, record), *cells])
    return rows, missing


# --------------------------------------------------------------------------------------- inputs


def load_json(path: Path) -> dict | None:
    """The JSON object in ``path``; ``None`` when the file does not exist (that stage has not run)."""
    from trl_ext.data.rows import RowFileError

    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RowFileError(path, err.lineno, None, f"not valid JSON: {err.msg}") from None
    if not isinstance(data, dict):
        raise RowFileError(path, None, None, f"expected a JSON object, got {type(data).__name__}")
    return data


def shown_path(value: Any, root: Path | None = None) -> Any:
    """A path as the page shows it: an embedded model by its name, anything else relative to ``root`` (the
    folder holding the outputs), the working directory or the asset cache, so a committed page never
    carries one machine's absolute paths."""
    if not isinstance(value, str) or not Path(value).is_absolute():
        return value
    from trl_ext.assets import MARKER_FILE, cache_root, model_asset_info

    path = Path(value)
    if (path / MARKER_FILE).is_file():
        info = model_asset_info(path) or {}
        if info.get("name"):
            return f"embedded:{info['name']}"
    bases = [(root, ""), (Path.cwd(), ""), (cache_root(), "$TRL_EXT_CACHE/")]
    for base, label in [(b, label) for b, label in bases if b is not None]:
        try:
            return label + str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return f"…/{path.name}"


def source_line(*paths: Path) -> str:
    """'Source: …' with each file's modification time, so a stale input is visible on the page."""
    parts = []
    for path in paths:
        stamp = datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")
        parts.append(f"`{path}` (written {stamp})")
    return "Source: " + ", ".join(parts) + "."


def not_run(path: Path, what: str = "") -> str:
    return f"{what}not run (expected `{path}`)."


def arm_metrics(outputs: Path, arms: Sequence[str]) -> tuple[dict[str, dict], dict[str, Path]]:
    """``metrics.json`` of each arm that has one, and the paths of all of them."""
    paths = {arm: outputs / arm / "metrics.json" for arm in arms}
    found = {arm: data for arm, path in paths.items() if (data := load_json(path)) is not None}
    return found, paths


def missing_keys_lines(path_of: Mapping[str, Path], missing: Mapping[str, list[str]]) -> list[str]:
    return [
        f"Keys absent from `{path_of[name]}` (shown as {NA}): {', '.join(keys)}."
        for name, keys in missing.items()
    ]


def unfinished_label(name: str, record: Mapping) -> str:
    return name if record.get("finished", True) else f"{name} (unfinished)"


# --------------------------------------------------------------------------------------- provenance


def embedded_model_info(model: str | None, script_args: Mapping | None = None) -> dict | None:
    """The embedded-model marker (``{"name", "random_weights", ...}``) of a run's start model or an
    evaluated model directory: from ``model_name_or_path`` (``embedded``, ``embedded:<name>``), the
    cache folder's name, or :func:`trl_ext.assets.model_asset_info` (marker file or config shape,
    which also catches checkpoints trained from an embedded model). None for any other model."""
    from trl_ext import assets

    name = assets.embedded_model_name((script_args or {}).get("model_name_or_path"))
    if name in assets.MODEL_FACTS:
        return {"name": name, **assets.MODEL_FACTS[name]}
    if not model:
        return None
    path = Path(model)
    for name, folder in assets.MODEL_DIR_NAMES.items():
        if path.name == folder:
            return {"name": name, **assets.MODEL_FACTS[name]}
    return assets.model_asset_info(path)


def is_tiny_embedded(model: str | None, script_args: Mapping | None = None) -> bool:
    """True for a random-weight embedded model (or a checkpoint trained from one)."""
    info = embedded_model_info(model, script_args)
    return bool(info and info.get("random_weights"))


def corpus_summary(path: Path) -> str | None:
    """Rows per split and source corpora of a prefix/suffix row file (``source_id`` = ``corpus/doc``)."""
    if not path.is_file():
        return None
    splits: dict[str, int] = {}
    sources: set[str] = set()
    from trl_ext.data.rows import RowFileError

    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise RowFileError(path, number, None, f"not valid JSON: {err.msg}") from None
            splits[row.get("split", "?")] = splits.get(row.get("split", "?"), 0) + 1
            sources.add(str(row.get("source_id", "?")))
    corpora = sorted({s.split("/", 1)[0] for s in sources})
    counts = ", ".join(f"{k} {v}" for k, v in sorted(splits.items()))
    return (
        f"`{path}`: {sum(splits.values())} prefix/suffix rows ({counts}) from {len(sources)} documents "
        f"of {', '.join(corpora)}"
    )


def provenance(outputs: Path, metrics: Mapping[str, Mapping], models: Sequence[str]) -> list[str]:
    """Header lines: which start model and data the numbers on the page come from."""
    lines: list[str] = []
    infos = [embedded_model_info(m.get("start_model"), m.get("script_args")) for m in metrics.values()]
    infos += [embedded_model_info(m) for m in models]
    names = {info["name"] for info in infos if info}
    if any(info and info.get("random_weights") for info in infos):
        from trl_ext.assets import TinyModelSpec

        spec = TinyModelSpec()
        lines += [
            "> **Pipeline check, not research results.** These runs use the embedded tiny random Qwen3 "
            f"(`trl_ext.assets`: {spec.num_hidden_layers} layers, hidden {spec.hidden_size}, random weights, "
            "the real Qwen3 tokenizer). The numbers show that every stage runs and writes its outputs; "
            "they say nothing about the method.",
            "",
        ]
    if "smollm2" in names:
        lines += [
            "> **A small real model at demo scale.** These runs start from SmolLM2-135M-Instruct (the "
            "embedded real model: Q4_1 weights dequantised, `<think>`/`</think>` added as new tokens) "
            "with CPU demo budgets (a few optimizer steps, 192-token prefixes) and offline stand-in "
            "judges (word-overlap F1 with the reference for RLMT, reward gate and probe; a likelihood "
            "judge for phase 3). The numbers are real measurements of this small run, so they show that "
            "each stage produces signal; they are not evidence for or against the method at scale.",
            "",
        ]
    if not metrics and not models:
        lines += ["No training metrics.json or eval summary found, so the model is unknown.", ""]
    rows = []
    for arm, m in metrics.items():
        script = m.get("script_args") or {}
        data = script.get("train_rows") or script.get("rl_rows") or NA
        count = m.get("train_rows", m.get("rl_rows"))
        rows.append(
            [
                arm,
                f"`{shown_path(m.get('start_model', NA), outputs.parent)}`",
                f"`{data}`" if data != NA else NA,
                fmt(count, ","),
                str(m.get("judge", "not recorded" if arm in (PHASE3_ARM, *RLMT_ARMS) else "—")),
                fmt(m.get("completed_steps"), ","),
            ]
        )
    if rows:
        lines += ["Start model and training data per arm (from each arm's `metrics.json`):", ""]
        lines += table(["Arm", "Start Model", "Training Rows File", "Rows", "Judge", "Steps"], rows)
        lines.append("")
    examples = (metrics.get(PHASE3_ARM, {}).get("script_args") or {}).get("train_rows")
    candidates = [Path(examples)] if examples else []  # recorded relative to where training ran
    corpus = next(
        (corpus_summary(p) for p in [*candidates, outputs / "data" / "examples.jsonl"] if p.is_file()), None
    )
    if corpus:
        lines.append(f"- Pretraining data: {corpus}.")
    other = sorted({m for m in models if m})
    if other:
        lines.append(
            "- Models evaluated: " + ", ".join(f"`{shown_path(m, outputs.parent)}`" for m in other) + "."
        )
    return lines


# --------------------------------------------------------------------------------------- sections

PHASE3_COLUMNS = [
    Column("Completed Steps", "completed_steps", ","),
    Column("Avg Chosen-is-Rollout", "chosen_is_rollout_rate"),
    Column("Final Chosen-is-Rollout", "final_chosen_is_rollout_rate"),
    Column("Avg Rollout Pointwise", "rollout_pointwise_mean"),
    Column("Avg Pivot Pointwise", "pivot_pointwise_mean"),
    Column("Judge Invalid Rate", "judge_invalid_rate", ".4f"),
    Column("Pool Size", "pool_size", ","),
    Column("Judge Calls / Prefix", "judge_calls_per_prefix", ","),
    Column("Tokens Seen", "tokens_seen", ","),
    Column("Wall Time s", "wall_time_s", ".2f"),
    Column("Final Checkpoint", "checkpoint", ""),
]
SFT_COLUMNS = [
    Column("Checkpoint", "checkpoint", ""),
    Column("Primary Metric", "primary_metric"),
    Column("Val Loss Raw", "val_loss_raw"),
    Column("Val Loss Selected", "val_loss_selected"),
    Column("Repetition 4-gram Rate", "repetition_4gram_rate"),
    Column("Tokens Seen", "tokens_seen", ","),
    Column("Throughput tok/s", "throughput_tok_s", ".2f"),
    Column("Min Available Mem GiB", "min_available_mem_gib", ".2f"),
    Column("Thought-Token NLL", "thought_nll"),
]
RLMT_COLUMNS = [
    Column("Completed Steps", "completed_steps", ","),
    Column("Stopped Reason", "stopped_reason", "", none="null"),
    Column("Avg Reward", "avg_reward"),
    Column("Final Reward", "final_reward"),
    Column("Avg Mixed Groups", "avg_mixed_groups", ".4f"),
    Column("Avg Near-Zero Groups", "avg_near_zero_groups", ".4f"),
    Column("Avg All-Zero Groups", "avg_all_zero_groups", ".4f"),
    Column("Avg All-One Groups", "avg_all_one_groups", ".4f"),
    Column("Invalid Judge", "invalid_judge", ".4f"),
    Column("Avg Length Drift", "avg_length_drift"),
    Column("Avg Artifact Rate", "avg_artifact_rate"),
    Column("Wall Time s", "wall_time_s", ".2f"),
    Column("Final Checkpoint", "final_checkpoint", ""),
]
GATE_COLUMNS = [
    Column("Reward Mean", "reward_mean"),
    Column("Reward Std", "reward_std"),
    Column("Invalid Rate", "invalid_rate", ".4f"),
    Column("Mixed Groups", "mixed_group_rate"),
    Column("Near-Zero Groups", "near_zero_group_rate"),
    Column("Any-Success Groups", "any_success_group_rate"),
    Column("All-Success Groups", "all_success_group_rate", ".4f"),
    Column("Avg Total New Tokens", "avg_total_new_tokens", ".4f"),
    Column("Avg Predicted Suffix Words", "avg_predicted_suffix_words", ".4f"),
    Column("Closed Think Rate", "closed_think_rate", ".4f"),
]
GATE_COMPARISON_COLUMNS = [
    Column("Mean Reward Delta", "mean_reward_delta"),
    Column("Right Better Prefix Rate", "right_better_prefix_rate"),
    Column("Left Better Prefix Rate", "left_better_prefix_rate"),
    Column("Tie Prefix Rate", "tie_prefix_rate"),
    Column("Shared Prefixes", "shared_prefixes", ","),
]


def phase3_section(outputs: Path, continuation_dir: Path) -> list[str]:
    lines = ["## Phase 3: self-improving continued pretraining (online DPO)", ""]
    metrics, paths = arm_metrics(outputs, [PHASE3_ARM])
    if metrics:
        lines += [source_line(paths[PHASE3_ARM]), ""]
        rows, missing = record_rows(metrics, PHASE3_COLUMNS, unfinished_label)
        lines += table(["Arm", *(c.title for c in PHASE3_COLUMNS)], rows)
        lines += ["", *missing_keys_lines(paths, missing)] if missing else []
    else:
        lines.append(not_run(paths[PHASE3_ARM], "Training: "))
    lines.append("")
    summary_path = continuation_dir / "summary.json"
    summary = load_json(summary_path)
    if summary is None:
        lines.append(not_run(summary_path, "Stage check (`python -m eval continuation`): "))
        return lines
    config = summary.get("config") or {}
    candidate = config.get("candidate", summary.get("candidate"))
    base = config.get("base", summary.get("base"))
    rate, (low, high) = summary.get("win_rate"), summary.get("win_rate_ci95") or (None, None)
    rate_text = NA if rate is None else f"{rate:.2%}"
    ci_text = NA if low is None else f"[{low:.2%}, {high:.2%}]"
    lines += [
        source_line(summary_path),
        "",
        f"- Held-out pairwise continuation quality: {candidate} beat {base} on "
        f"{summary.get('candidate_wins')}/{summary.get('valid')} comparisons = {rate_text} "
        f"(95% Wilson interval {ci_text}).",
        f"- Prefixes judged: {summary.get('prefixes')}; invalid judgements: {summary.get('invalid')}; "
        f"identical continuations: {summary.get('identical_continuations')}.",
        f"- Repetition 4-gram rate: {base} {fmt(summary.get('repetition_4gram_rate_base'))}, "
        f"{candidate} {fmt(summary.get('repetition_4gram_rate_candidate'))}.",
    ]
    judge = config.get("judge")
    if judge:
        scorer = f" (scorer `{config.get('judge_scorer')}`)" if judge == "likelihood" else ""
        lines.append(
            f"- Judge: {judge}{scorer}; {config.get('max_new_tokens')} greedy tokens per continuation."
        )
    return lines


def training_section(
    title: str, outputs: Path, arms: Sequence[str], columns: Sequence[Column], suffix: str = ""
) -> list[str]:
    """SFT / RLMT: one row per arm with a metrics.json, one 'not run' line per arm without."""
    lines = [title, ""]
    metrics, paths = arm_metrics(outputs, arms)
    absent = [arm for arm in arms if arm not in metrics]
    if not metrics:
        return [*lines, not_run(outputs / ("{" + ",".join(arms) + "}") / "metrics.json")]
    lines += [source_line(*(paths[a] for a in metrics)), ""]
    rows, missing = record_rows(metrics, columns, lambda n, r: unfinished_label(n + suffix, r))
    lines += table(["Arm", *(c.title for c in columns)], rows)
    lines += ["", *missing_keys_lines(paths, missing)] if missing else []
    lines += [line for arm in absent for line in ("", not_run(paths[arm], f"{arm}: "))]
    return lines


def reward_gate_section(gate_dir: Path) -> list[str]:
    lines = ["## Reward gate (post-RLMT, two-stage external boundary)", ""]
    path = gate_dir / "summary.json"
    summary = load_json(path)
    if summary is None:
        return [*lines, not_run(path)]
    config = summary.get("config") or {}
    judge = config.get("judge") or {}
    lines += [
        source_line(path),
        "",
        f"Scope: {config.get('num_prefixes')} prefixes "
        f"(`{shown_path(config.get('rows'))}`, split {config.get('split') or 'all'}), "
        f"{config.get('samples')} samples per prefix, thought ≤{config.get('think_max_tokens')} tokens, "
        f"suffix ≤{config.get('suffix_max_tokens')} tokens; judge: "
        + (", ".join(f"{k}={v}" for k, v in judge.items()) if isinstance(judge, Mapping) else str(judge))
        + f". Complete: {str(summary.get('complete')).lower()}.",
        "",
    ]
    rows, missing = record_rows(summary.get("arms", {}), GATE_COLUMNS, lambda n, r: n)
    lines += table(["Arm", *(c.title for c in GATE_COLUMNS)], rows)
    comparisons = summary.get("comparisons") or {}
    if comparisons:
        lines += ["", "Reward-gate comparisons (per-prefix mean reward, right minus left):", ""]
        crows, cmissing = record_rows(comparisons, GATE_COMPARISON_COLUMNS, lambda n, r: n)
        lines += table(["Comparison", *(c.title for c in GATE_COMPARISON_COLUMNS)], crows)
        missing |= cmissing
    lines += ["", "Reward-gate go/no-go fields:", ""]
    lines += [
        f"- {k}: {'not measured' if v is None else str(v).lower()}"
        for k, v in summary.get("go_no_go", {}).items()
    ]
    headline = summary.get("headline")
    if headline:
        lines.append(
            f"- headline: {headline['phase3_arm']} minus {headline['base_arm']} mean reward "
            f"{signed(headline.get('mean_phase3_minus_base_reward'))} "
            f"over {headline.get('shared_prefixes')} prefixes"
        )
    if missing:
        lines += [
            "",
            *(
                f"Keys absent from `{path}` for {n} (shown as {NA}): {', '.join(k)}."
                for n, k in missing.items()
            ),
        ]
    return lines


def thought_probe_section(probe_dir: Path) -> list[str]:
    from eval.thought_probe import render_table

    lines = ["## Thought-use probe", ""]
    path = probe_dir / "summary.json"
    summary = load_json(path)
    if summary is None:
        return [*lines, not_run(path)]
    config = summary.get("config") or {}
    lines += [
        source_line(path),
        "",
        f"Scope: {config.get('num_prefixes')} prefixes, {config.get('samples')} samples per condition, "
        f"thought bank of {config.get('bank_size')} per prefix. "
        f"Complete: {str(summary.get('complete')).lower()}. "
        "Reward per condition (first table); per-prefix deltas and oracle@k over the thought bank (second).",
        "",
        render_table(summary),
        "",
    ]
    for arm, s in summary.get("arms", {}).items():
        if "best_control" in s:
            lines.append(
                f"- {arm}: normal thought beats the best control ({s['best_control']}): "
                f"{str(s['normal_beats_best_control']).lower()}"
            )
    return lines


def reasoning_section(eval_dir: Path) -> list[str]:
    """The reasoning-eval report of :mod:`eval.report`, over the arms that have benchmark rows."""
    from eval.arms import ARMS
    from eval.benchmarks import BENCHMARKS

    lines = ["## Reasoning eval", ""]
    expected = eval_dir / "<arm>" / "<benchmark>.jsonl"
    if not eval_dir.is_dir():
        return [*lines, not_run(expected)]
    from eval.report import build_report, render_markdown
    from eval.results import discover

    found = {arm: benches for arm, benches in discover(eval_dir).items() if set(benches) & set(BENCHMARKS)}
    if not found:
        return [*lines, not_run(expected)]
    arms = [a for a in ARMS if a in found] + sorted(a for a in found if a not in ARMS)
    report = build_report(eval_dir, arms)
    files = sorted(p for arm in arms for bench, p in found[arm].items() if bench in BENCHMARKS)
    body = render_markdown(report).splitlines()
    if body and body[0].startswith("# "):
        body = body[1:]
    return [*lines, source_line(*files), *body]


# --------------------------------------------------------------------------------------- page


def evaluated_models(*summaries: Mapping | None) -> list[str]:
    """Model directories named in eval summaries (reward gate / probe ``run``, continuation)."""
    models = []
    for summary in summaries:
        if not summary:
            continue
        models += [info.get("model_dir") for info in (summary.get("run") or {}).values()]
        models += [summary.get("base"), summary.get("candidate")] if "win_rate" in summary else []
    return [m for m in models if isinstance(m, str)]


def render_page(
    outputs: Path,
    eval_dir: Path | None = None,
    continuation_dir: Path | None = None,
    reward_gate_dir: Path | None = None,
    thought_probe_dir: Path | None = None,
    now: datetime | None = None,
) -> str:
    """The whole page as markdown (pure function of the files under ``outputs``)."""
    eval_dir = eval_dir or outputs / "eval"
    continuation_dir = continuation_dir or eval_dir / "continuation"
    reward_gate_dir = reward_gate_dir or eval_dir / "reward_gate"
    thought_probe_dir = thought_probe_dir or eval_dir / "thought_probe"
    now = now or datetime.now(UTC)
    metrics, _ = arm_metrics(outputs, TRAINED_ARMS)
    models = evaluated_models(
        load_json(continuation_dir / "summary.json"),
        load_json(reward_gate_dir / "summary.json"),
        load_json(thought_probe_dir / "summary.json"),
    )
    sections = [
        [
            "# trl_ext results",
            "",
            f"Generated {now.strftime('%Y-%m-%d %H:%M:%S UTC')} by `python -m eval results-page --outputs "
            f"{shown_path(str(outputs))}` from the files named in each section; "
            "no number on this page is typed by hand.",
            "",
            *provenance(outputs, metrics, models),
        ],
        phase3_section(outputs, continuation_dir),
        training_section("## Thinking SFT", outputs, SFT_ARMS, SFT_COLUMNS, " SFT"),
        training_section("## RLMT", outputs, RLMT_ARMS, RLMT_COLUMNS),
        reward_gate_section(reward_gate_dir),
        thought_probe_section(thought_probe_dir),
        reasoning_section(eval_dir),
    ]
    return "\n\n".join("\n".join(s).strip("\n") for s in sections) + "\n"


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "results-page",
        help="render docs/results.md from every metrics.json / summary.json / eval row under --outputs",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--outputs", default="outputs", help="root of the arms' training outputs (outputs)")
    parser.add_argument("--out", default="docs/results.md", help="markdown file to write (docs/results.md)")
    parser.add_argument("--eval-dir", help="reasoning-eval root (default: <outputs>/eval)")
    parser.add_argument("--continuation-dir", help="stage-check output (default: <eval-dir>/continuation)")
    parser.add_argument("--reward-gate-dir", help="reward-gate output (default: <eval-dir>/reward_gate)")
    parser.add_argument(
        "--thought-probe-dir", help="thought-probe output (default: <eval-dir>/thought_probe)"
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    def opt(value: str | None) -> Path | None:
        return Path(value) if value else None

    page = render_page(
        Path(args.outputs),
        opt(args.eval_dir),
        opt(args.continuation_dir),
        opt(args.reward_gate_dir),
        opt(args.thought_probe_dir),
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    missing = page.count("not run (expected")
    print(f"wrote {out} ({missing} input(s) not run yet)")
    return 0
