"""The console's vendored libraries are the files tools/vendor_console.py fetched and checked
(pinned versions, npm integrity): every module served from vendor/ is listed with its sha256, and a
file changed by hand (or a new one slipped in) fails here."""

from __future__ import annotations

import hashlib
from pathlib import Path

VENDOR = Path(__file__).resolve().parents[2] / "api" / "console" / "static" / "vendor"


def test_every_vendored_module_matches_its_recorded_hash() -> None:
    recorded: dict[str, str] = {}
    for line in (VENDOR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        recorded[name] = digest
    served = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in VENDOR.glob("*.mjs")}
    assert served == recorded


def test_every_vendored_library_has_its_licence() -> None:
    for name in ["preact", "htm", "marked", "dompurify"]:
        assert (VENDOR / f"{name}.LICENSE").read_text().strip(), name
