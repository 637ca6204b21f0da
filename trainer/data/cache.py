"""Cache of prepared data, keyed by everything that changes it.

The key hashes the data files' bytes, the profile and its options, the tokenizer and chat
template, and the data settings that affect rendering, so an unchanged re-run skips preparation
and any changed input misses. ``datasets``' own fingerprint cache keys on the transform's code,
not on our profile objects or the files' bytes read by our own reader, so we key it ourselves and
let ``datasets`` store the arrays (``save_to_disk`` / ``load_from_disk``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

KEY_VERSION = 2  # bump when the prepared format changes


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, memoised per (path, size, mtime): a job hashes its data files
    once for the resume check (``trainer.core.resume``) and again for this cache's key."""
    stat = path.stat()
    return _digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=1024)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer: Any, chat_template: str | None) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocab = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    special = json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str)
    return hashlib.sha256("\0".join([vocab, special, chat_template or ""]).encode()).hexdigest()


def cache_key(files: list[Path], tokenizer_print: str, settings: dict[str, Any]) -> str:
    parts = {
        "version": KEY_VERSION,
        "files": [[str(p.resolve()), file_digest(p)] for p in files],
        "tokenizer": tokenizer_print,
        "settings": settings,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


class PreparedCache:
    """``root/<key>/`` holds ``train/`` (a saved dataset) and ``meta.json``, written last."""

    def __init__(self, root: Path):
        self.root = root

    def load(self, key: str) -> tuple[Any, dict[str, Any]] | None:
        folder = self.root / key
        meta = folder / "meta.json"
        if not meta.is_file():
            return None
        from datasets import load_from_disk

        try:
            return load_from_disk(str(folder / "train")), json.loads(meta.read_text("utf-8"))
        except (OSError, ValueError, IndexError):
            # A damaged entry (or one of no rows, which datasets cannot load) is a miss; it is
            # rebuilt and replaced.
            return None

    def store(self, key: str, dataset: Any, meta: dict[str, Any]) -> None:
        """Write into a temp folder and rename it into place, so readers never see half."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=self.root))
        try:
            dataset.save_to_disk(str(tmp / "train"))
            (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), "utf-8")
            final = self.root / key
            if final.exists() and not (final / "meta.json").is_file():
                shutil.rmtree(final, ignore_errors=True)  # a damaged entry
            os.replace(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if (self.root / key / "meta.json").is_file():
                return  # another process stored the same key first: same contents, fine
            raise
