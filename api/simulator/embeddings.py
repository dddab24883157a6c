"""`POST /embeddings`: deterministic embeddings, so a semantic match (golden tests) runs without a
provider. A text's vector is its hashed bag of lowercase words in DIMENSIONS buckets, normalised
to length 1: texts that share words are similar (cosine > 0), the same text is 1, texts with no
word in common are 0 (unless two words share a bucket)."""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct

DIMENSIONS = 256
_WORD = re.compile(r"\w+")


def embed(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    counts = [0.0] * dimensions
    for word in _WORD.findall(text.lower()):
        bucket = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big") % dimensions
        counts[bucket] += 1.0
    norm = math.sqrt(sum(c * c for c in counts))
    return [c / norm for c in counts] if norm else counts


def as_base64(vector: list[float]) -> str:
    """OpenAI's `encoding_format: base64`: the little-endian float32 array, base64-encoded (the
    OpenAI SDK asks for it by default and decodes it)."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
