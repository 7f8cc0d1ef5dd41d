"""Test data for the reward gate and the thought-use probe: interleaved-thinking rows made from
the embedded Brown corpus (real text), one teacher-style thought after ~170 words."""

from __future__ import annotations

import json
import re
from pathlib import Path

from trl_ext.data.rows import write_rows


def thinking_rows(corpus_path: Path, n: int) -> list[dict]:
    rows = []
    with open(corpus_path, encoding="utf-8") as handle:
        for line in handle:
            doc = json.loads(line)
            sentences = re.split(r"(?<=[.!?])\s+", doc["text"])
            before, words = [], 0
            for sentence in sentences:
                before.append(sentence)
                words += len(sentence.split())
                if words >= 170:
                    break
            after = sentences[len(before) :]
            if words < 170 or sum(len(s.split()) for s in after) < 120:
                continue
            thought = "Recall how it began: " + " ".join(sentences[0].split()[:8])
            text = " ".join(before) + " <think>" + thought + "</think> " + " ".join(after)
            rows.append({"id": doc["source_id"], "text": text, "source_sha": doc["source_id"]})
            if len(rows) == n:
                break
    return rows


def write_thinking_rows(corpus_path: Path, out: Path, n: int) -> Path:
    write_rows(out, thinking_rows(corpus_path, n))
    return out


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
