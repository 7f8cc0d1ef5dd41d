"""``transformers serve`` for CPU machines, with nucleus sampling that does not sort the vocabulary.

    python -m eval.cpu_server serve MODEL --continuous-batching ...  # arguments of `transformers serve`
    python -m eval.cpu_server --stock-sampling serve MODEL ...      # transformers' own sampler

Why: in ``transformers serve --continuous-batching`` every decode step runs ``TopPLogitsWarper``
(a full sort of the vocabulary) and ``torch.multinomial`` for every sequence in the batch. On a
2-core CPU with Qwen3's 152k-token vocabulary that is ~11 ms per sequence per token, more than the
forward pass of the tiny model, so serving 32 requests at once was only ~2x faster than one at a
time. :func:`eval.nucleus_sampling.nucleus_sample` draws from the same distribution in one pass
over the vocabulary (~0.4 ms per sequence); ``bench/bench_sampler.py`` and ``bench/bench_client.py``
measure both.

What changes inside the server: when a continuous-batching model runner samples
(``do_sample``, no logprobs requested), its ``_sample`` draws with ``nucleus_sample`` instead of
``torch.multinomial`` (also ~10x cheaper over 152k tokens). If its last logits processors are
transformers' plain ``TemperatureLogitsWarper`` and ``TopPLogitsWarper``, they are taken out of the
runner's processor list (any other processors still run first) and their ``temperature`` and
``top_p`` go to ``nucleus_sample``. Greedy decoding and logprob requests keep transformers' code
path. The server logs one line when the sampler is installed. Only this server process is
affected; nothing is patched in a process that imports :mod:`eval`.
"""

from __future__ import annotations

import copy
import math
import sys

INSTALLED_MESSAGE = "trl_ext: continuous batching samples with eval.nucleus_sampling (no vocabulary sort)"


def install_nucleus_sampler() -> None:
    """Patch transformers' continuous-batching ``ModelRunner`` (see the module docstring)."""
    import torch
    from transformers.generation.continuous_batching import model_runner
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        TemperatureLogitsWarper,
    )

    from eval.nucleus_sampling import nucleus_sample

    runner_cls = model_runner.ModelRunner
    for name in ("__init__", "_sample"):
        if not hasattr(runner_cls, name):  # a transformers release outside the pinned range
            raise RuntimeError(f"transformers' ModelRunner has no {name}; run with --stock-sampling")
    original_init, original_sample = runner_cls.__init__, runner_cls._sample

    def __init__(self, logit_processor, *args, **kwargs) -> None:
        original_init(self, logit_processor, *args, **kwargs)
        self.nucleus_sampling = None
        if not self.do_sample or self.return_logprobs:
            return  # greedy decoding or logprobs: transformers' own path
        processors = list(getattr(logit_processor, "logits_processor", []))
        top_p = temperature = 1.0
        if processors and _is_plain_top_p(processors[-1]):
            top_p = float(processors.pop().top_p)
            if processors and type(processors[-1]) is TemperatureLogitsWarper:
                temperature = float(processors.pop().temperature)
        if len(processors) < len(logit_processor.logits_processor):
            # The batch processor keeps the full list (it only prepares per-request arguments); the
            # runner gets a copy without the warpers whose work moves into _sample.
            runner_processors = copy.copy(logit_processor)
            runner_processors.logits_processor = LogitsProcessorList(processors)
            runner_processors.do_processing = bool(processors)
            self.logit_processor = runner_processors
        self.nucleus_sampling = {"top_p": top_p, "temperature": temperature}
        print(f"{INSTALLED_MESSAGE} ({self.nucleus_sampling})", file=sys.stderr, flush=True)

    def _sample(self, scores: torch.Tensor, output_ids: torch.Tensor) -> None:
        if self.nucleus_sampling is None:
            return original_sample(self, scores, output_ids)
        # scores: [1, num_logits, vocab]; nothing reads them after sampling, so work in place.
        tokens = nucleus_sample(scores[0], **self.nucleus_sampling, inplace=True)
        output_ids[0, : tokens.size(0)].copy_(tokens)
        return None

    runner_cls.__init__ = __init__
    runner_cls._sample = _sample


def _is_plain_top_p(processor: object) -> bool:
    """transformers' own top-p warper with the defaults nucleus_sample implements."""
    from transformers.generation.logits_process import TopPLogitsWarper

    return (
        type(processor) is TopPLogitsWarper
        and processor.min_tokens_to_keep == 1
        and math.isinf(processor.filter_value)
        and processor.filter_value < 0
    )


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    stock = "--stock-sampling" in args
    if stock:
        args.remove("--stock-sampling")
    else:
        install_nucleus_sampler()
    from transformers.cli.transformers import main as transformers_cli

    sys.argv = ["transformers", *args]
    return transformers_cli()


if __name__ == "__main__":
    sys.exit(main())
