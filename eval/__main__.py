"""``python -m eval <command>``: serve, suite, regrade, report, continuation, reward-gate, thought-probe,
results-page.

``make eval ARM=<arm>`` runs ``python -m eval suite --arm <arm>``: it finds the arm's model
directory, starts a server on 127.0.0.1 (SGLang on a GPU, ``transformers serve`` on CPU), waits
for ``/health`` and ``/v1/models``, runs the suite, stops the server by PID (also on error,
Ctrl-C or SIGTERM) and writes the report. ``--base-url`` (repeatable) uses running endpoints.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import signal
import sys
import time
from pathlib import Path

DEFAULT_OUT = "outputs/eval"
# Presets (eval/presets.py) fill every suite flag the user did not give: demo (a CPU pipeline check
# on the embedded default), full (this project's protocol), seed (the reference run's protocol),
# lm-eval-gsm8k-cot and lighteval (those harnesses' prompts and extraction).
PLUGIN_COMMANDS = {  # subcommands whose modules other parts of the project own
    "continuation": "eval.continuation",
    "reward-gate": "eval.reward_gate",
    "thought-probe": "eval.thought_probe",
    "results-page": "eval.results_page",
}


def _server_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model and server")
    group.add_argument("--arm", help="arm whose outputs/<arm>/final is served ('base' = the starting model)")
    group.add_argument("--model-dir", help="serve this HF model directory instead of an arm's")
    group.add_argument("--outputs", default="outputs", help="root of the arms' training outputs")
    group.add_argument("--base-model", help="model served for --arm base (default: the embedded tiny Qwen3)")
    group.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "sglang", "transformers"],
        help="server: SGLang when installed with a GPU, else transformers serve",
    )
    group.add_argument("--host", default="127.0.0.1")
    group.add_argument("--port", type=int, help="server port (default: a free one)")
    group.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra server flag, repeatable; for SGLang these override the reference run's flags, "
        "e.g. --server-arg=--mem-fraction-static=0.8 --server-arg=--tp=2",
    )
    group.add_argument("--ready-timeout", type=float, default=600.0, help="seconds to wait for /health")
    group.add_argument("--server-log", help="server log file (default: <out>/<arm>/server.log)")


def add_serve_parser(sub) -> None:
    parser = sub.add_parser("serve", help="serve an arm's model until Ctrl-C")
    _server_args(parser)
    parser.set_defaults(func=cmd_serve)


def add_suite_parser(sub) -> None:
    parser = sub.add_parser("suite", help="run the reasoning suite for one arm (serves it unless --base-url)")
    _server_args(parser)
    parser.add_argument("--base-url", action="append", default=[], help="use a running endpoint (repeatable)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="results root: <out>/<arm>/<benchmark>.jsonl")
    from eval.graders import available_graders
    from eval.presets import PRESETS

    parser.add_argument(
        "--preset",
        default="auto",
        choices=["auto", *PRESETS],
        help="protocol: datasets, prompts, stop, sampling and grader (docs/eval.md lists each with its "
        "source); flags below override it. auto = demo when serving on CPU, else full",
    )
    parser.add_argument(
        "--grader", choices=available_graders(), help="grader for this run (default: the preset's)"
    )
    parser.add_argument("--benchmarks", help="comma list of gsm8k, math500, gpqa_diamond, olympiadbench")
    parser.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="BENCH=PATH_OR_ID",
        help="local file (same schema as the HF dataset), HF id, or 'embedded' (GSM8K)",
    )
    parser.add_argument("--num-samples", type=int, help="k samples per problem (k requests)")
    parser.add_argument("--limit", type=int, help="first N problems per benchmark")
    parser.add_argument("--max-tokens", type=int, help="max new tokens per sample")
    parser.add_argument("--temperature", type=float, help="default: the preset's (0.6 for most)")
    parser.add_argument("--top-p", type=float, help="default: the preset's (0.95 for most)")
    parser.add_argument(
        "--mode",
        choices=["raw", "chat"],
        help="raw completions (base/SFT models) or chat messages (default: the preset's)",
    )
    parser.add_argument(
        "--no-stop", action="store_true", help="no stop sequences (the reference run's behaviour)"
    )
    parser.add_argument(
        "--extra-body",
        type=json.loads,
        default={},
        metavar="JSON",
        help="JSON merged into every request body, e.g. "
        '\'{"chat_template_kwargs": {"enable_thinking": true}}\' (SGLang, chat mode)',
    )
    parser.add_argument("--seed", type=int, default=4337, help="seed of the GPQA option permutations")
    parser.add_argument(
        "--gpqa-shuffle", choices=["per_problem", "per_sample", "none"], help="default: the preset's"
    )
    parser.add_argument("--concurrency", type=int, help="max in-flight requests (default 32)")
    parser.add_argument("--request-timeout", type=float, default=180.0)
    parser.add_argument("--retries", type=int, default=3)
    parser.add_argument("--grader-timeout", type=float, default=10.0, help="hard limit per grading call (s)")
    parser.add_argument("--grader-workers", type=int, default=1)
    parser.add_argument("--overwrite", action="store_true", help="delete this arm's stored samples first")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--no-report", action="store_true", help="skip report.md/json/png over <out>")
    parser.set_defaults(func=cmd_suite)


def add_regrade_parser(sub) -> None:
    from eval.graders import available_graders

    parser = sub.add_parser("regrade", help="re-score stored completions (no generation)")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument(
        "--grader",
        choices=available_graders(),
        help="switch the stored rows to this grader (default: each row keeps its own)",
    )
    parser.add_argument("--arms", nargs="*")
    parser.add_argument("--benchmarks", help="comma list (default: all found)")
    parser.add_argument("--grader-timeout", type=float, default=10.0)
    parser.add_argument("--grader-workers", type=int, default=2)
    parser.add_argument("--dry-run", action="store_true", help="count changed verdicts, do not rewrite")
    parser.set_defaults(func=cmd_regrade)


def add_report_parser(sub) -> None:
    parser = sub.add_parser("report", help="tables (markdown + JSON) and plots from stored samples")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--arms", nargs="*", help="arms in table order (default: all found)")
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="RIGHT:LEFT",
        help="report RIGHT minus LEFT (repeatable; default: the reference run's comparisons)",
    )
    parser.add_argument("--report-dir", help="where to write (default: --out)")
    parser.add_argument("--no-plots", action="store_true")
    parser.set_defaults(func=cmd_report)


# --------------------------------------------------------------------------- commands


def _model_dir(args) -> Path:
    from eval.arms import checkpoint_dir

    if args.model_dir:
        return Path(args.model_dir)
    if not args.arm:
        raise SystemExit("error: give --arm ARM or --model-dir DIR")
    return checkpoint_dir(args.arm, args.outputs, args.base_model)


@contextlib.contextmanager
def _sigterm_as_exit():
    """Turn SIGTERM (make, CI, kill) into SystemExit so the server is stopped in ``finally``."""
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_serve(args) -> int:
    from eval.serving import launch_server

    model_dir = _model_dir(args)
    with (
        _sigterm_as_exit(),
        launch_server(
            model_dir,
            backend=args.backend,
            host=args.host,
            port=args.port,
            extra_args=args.server_arg,
            ready_timeout_s=args.ready_timeout,
            log_path=args.server_log,
        ) as handle,
    ):
        print(
            f"serving {model_dir} with {handle.backend} at {handle.base_url} (pid {handle.pid}); "
            "Ctrl-C stops it"
        )
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    return 0


def _parse_sources(items: list[str]) -> dict[str, str]:
    from eval.benchmarks import get_benchmark

    sources = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"error: --source {item!r}: expected BENCH=PATH_OR_ID")
        name, value = item.split("=", 1)
        sources[get_benchmark(name).name] = value
    return sources


def suite_config(args, preset_name: str, model: dict | None = None):
    from eval.client import SamplingConfig
    from eval.presets import get_preset
    from eval.suite import SuiteConfig

    preset = get_preset(preset_name)
    benchmarks = args.benchmarks.split(",") if args.benchmarks else list(preset.benchmarks)
    benchmarks = [preset.benchmark(b).name for b in benchmarks if b.strip()]
    sources = {**preset.sources, **_parse_sources(args.source)}

    def pick(flag, default):
        return default if flag is None else flag

    sampling = SamplingConfig(
        max_tokens=args.max_tokens or preset.max_tokens,
        temperature=pick(args.temperature, preset.temperature),
        top_p=pick(args.top_p, preset.top_p),
        use_stop=preset.use_stop and not args.no_stop,
        extra=dict(args.extra_body),
    )
    return SuiteConfig(
        arm=args.arm or Path(args.model_dir or "model").name,
        out_dir=Path(args.out),
        benchmarks=benchmarks,
        sources={b: s for b, s in sources.items() if b in benchmarks},
        num_samples=args.num_samples or preset.num_samples,
        limit=args.limit if args.limit is not None else preset.limit,
        mode=pick(args.mode, preset.mode),
        seed=args.seed,
        gpqa_shuffle=pick(args.gpqa_shuffle, preset.gpqa_shuffle),
        sampling=sampling,
        max_concurrency=args.concurrency or preset.max_concurrency,
        request_timeout_s=args.request_timeout,
        max_retries=args.retries,
        grader_timeout_s=args.grader_timeout,
        grader_workers=args.grader_workers,
        progress=not args.no_progress,
        preset=preset.name,
        grader=args.grader or preset.grader,
        model=model or {},
    )


def model_info(model_dir: Path | None, base_urls: list[str]) -> dict:
    """What the report says about the model: its directory and whether its weights are random
    (the embedded tiny model, or a checkpoint trained from it: trl_ext.assets.model_asset_info)."""
    if model_dir is None:
        return {"name": ", ".join(base_urls), "random_weights": None}
    info: dict = {"dir": str(model_dir), "name": Path(model_dir).name, "random_weights": None}
    try:
        from trl_ext.assets import model_asset_info
    except ImportError:  # an older checkout without the embedded-model markers
        return info
    asset = model_asset_info(model_dir)
    if asset is not None:
        info["random_weights"] = bool(asset.get("random_weights"))
        info["embedded"] = asset.get("name")
    elif (Path(model_dir) / "config.json").exists():
        info["random_weights"] = False
    return info


def cmd_suite(args) -> int:
    from eval.serving import launch_server, pick_backend
    from eval.suite import prepare_requests, run_suite

    backend = None if args.base_url else pick_backend(args.backend)
    preset = args.preset
    if preset == "auto":
        preset = "demo" if backend == "transformers" else "full"
    model_dir = None if args.base_url else _model_dir(args)  # a missing arm fails first
    config = suite_config(args, preset, model_info(model_dir, args.base_url))
    arm_dir = config.out_dir / config.arm
    if args.overwrite:
        for bench in config.benchmarks:
            for path in (arm_dir / f"{bench}.jsonl", arm_dir / f"{bench}.failures.jsonl"):
                path.unlink(missing_ok=True)
        (arm_dir / "sampling.json").unlink(missing_ok=True)
    print(
        f"eval suite: arm={config.arm} preset={preset} benchmarks={','.join(config.benchmarks)} "
        f"k={config.num_samples} max_tokens={config.sampling.max_tokens} mode={config.mode} "
        f"grader={config.grader} out={arm_dir}"
    )
    requests = prepare_requests(config)  # then bad data, all before a server starts
    with _sigterm_as_exit():
        if args.base_url:
            summary = run_suite(config, args.base_url, requests)
        else:
            arm_dir.mkdir(parents=True, exist_ok=True)
            log_path = args.server_log or arm_dir / "server.log"
            with launch_server(
                model_dir,
                backend=backend,
                host=args.host,
                port=args.port,
                extra_args=args.server_arg,
                ready_timeout_s=args.ready_timeout,
                log_path=log_path,
                sampling=_server_sampling(config.sampling),
            ) as handle:
                print(
                    f"server: {handle.backend} pid {handle.pid} (server pid {handle.server_pid}, "
                    f"workdir {handle.workdir}) at {handle.base_url} serving {model_dir}",
                    flush=True,
                )
                summary = run_suite(config, [handle.base_url], requests)
    _print_summary(summary)
    if not args.no_report:
        from eval.report import render_markdown, write_report

        report = write_report(config.out_dir)
        print(render_markdown(report))
        print(
            f"report: {config.out_dir / 'report.md'}, {config.out_dir / 'report.json'}, "
            f"{config.out_dir / 'plots'}"
        )
    return 0 if summary.get("complete") else 3


def _server_sampling(sampling) -> dict:
    """The CPU server's default sampling (its continuous batching applies one setting to all)."""
    if sampling.temperature <= 0:
        return {"do_sample": False}
    return {"temperature": sampling.temperature, "top_p": sampling.top_p}


def _print_summary(summary: dict) -> None:
    for bench, entry in summary["benchmarks"].items():
        run = entry.get("run", {})
        print(
            f"{summary['arm']}/{bench}: mean@k={entry.get('mean_at_k')} "
            f"pass@k_any={entry.get('pass_at_k_any')} samples={entry.get('num_samples')} "
            f"resumed={run.get('resumed')} generated={run.get('generated')} "
            f"failed={run.get('failed')} missing={run.get('missing')} "
            f"tok/s={run.get('throughput', {}).get('tokens_per_s')}"
        )
    if not summary.get("complete"):
        print("INCOMPLETE: some samples failed after all retries; rerun the same command to retry them.")


def cmd_regrade(args) -> int:
    from eval.graders import GRADERS, GraderPool
    from eval.report import write_report
    from eval.results import discover, regrade_file, write_json
    from eval.suite import refresh_summary

    files = discover(args.out, args.arms)
    wanted = set(args.benchmarks.split(",")) if args.benchmarks else None
    if args.grader:
        found = {b for benches in files.values() for b in benches if not wanted or b in wanted}
        unsupported = sorted(found - set(GRADERS[args.grader]))
        if unsupported:
            raise SystemExit(
                f"error: grader {args.grader!r} has no rule for {', '.join(unsupported)}; "
                f"restrict with --benchmarks {','.join(sorted(found & set(GRADERS[args.grader]))) or '...'}"
            )
    totals = {}
    with GraderPool(workers=args.grader_workers, timeout_s=args.grader_timeout) as pool:
        for arm, benches in files.items():
            for bench, path in benches.items():
                if wanted and bench not in wanted:
                    continue
                stats = regrade_file(path, pool, dry_run=args.dry_run, grader=args.grader)
                totals[f"{arm}/{bench}"] = stats
                print(f"{arm}/{bench}: {json.dumps(stats)}")
    if not args.dry_run and totals:
        for arm in files:
            refresh_summary(args.out, arm)  # every aggregate, not only report.json
            sampling_path = Path(args.out) / arm / "sampling.json"
            if args.grader and sampling_path.exists():  # a resumed run must grade the same way
                stored = json.loads(sampling_path.read_text(encoding="utf-8"))
                write_json(sampling_path, {**stored, "grader": args.grader})
        write_report(args.out)
        print(f"summaries and report rewritten: {Path(args.out) / 'report.md'}")
    return 0


def cmd_report(args) -> int:
    from eval.report import render_markdown, write_report

    compare = []
    for item in args.compare:
        if ":" not in item:
            raise SystemExit(f"error: --compare {item!r}: expected RIGHT:LEFT")
        compare.append(tuple(item.split(":", 1)))
    report = write_report(args.out, args.arms, compare or None, args.report_dir, plots=not args.no_plots)
    print(render_markdown(report))
    return 0


# --------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_serve_parser(sub)
    add_suite_parser(sub)
    add_regrade_parser(sub)
    add_report_parser(sub)
    for name, module_name in PLUGIN_COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue  # that part of the package is not installed in this checkout
        before = set(sub.choices)
        module.add_parser(sub)
        for added in set(sub.choices) - before:
            sub.choices[added].set_defaults(func=module.run)
        if name not in sub.choices:
            raise RuntimeError(f"{module_name}.add_parser did not register the '{name}' subcommand")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "matplotlib"):  # one line per request drowns the progress bar
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    from eval.arms import ArmError
    from eval.results import ResumeMismatchError
    from trl_ext.assets import AssetError
    from trl_ext.data.rows import RowFileError

    try:
        return int(args.func(args) or 0)
    except (ArmError, AssetError, RowFileError, ResumeMismatchError) as err:
        print(f"error: {err}", file=sys.stderr)  # the message names what to fix; no traceback
        return 2
    except KeyboardInterrupt:
        print("interrupted; stored samples are kept, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
