"""Vendors the web console's browser libraries from npm, pinned and hash-checked (no Node.js).

The console (api/console/static) is plain ES modules served as they are: no bundler, no build step,
so what is committed is what runs. Its four libraries come from the npm registry at exact versions,
each tarball checked against the registry's sha512 integrity pinned below, and are copied with their
licence files into api/console/static/vendor/. Run it only to change a version:

    .venv/bin/python tools/vendor_console.py

The rewrites: preact's hooks import the bare specifier "preact", which a browser cannot resolve
without an import map (an inline script, which the console's Content-Security-Policy forbids); it is
pointed at the vendored file instead; and the `//# sourceMappingURL=` comments go (the maps are not
shipped). Everything else is byte-for-byte the package's file.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import tarfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

VENDOR = Path(__file__).resolve().parents[1] / "api" / "console" / "static" / "vendor"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    integrity: str  # the registry's `dist.integrity` for this version
    files: dict[str, str]  # path in the tarball -> vendored file name
    licences: dict[str, str]
    rewrites: dict[str, tuple[str, str]] = field(default_factory=dict)  # vendored file -> (old, new)

    @property
    def tarball(self) -> str:
        return f"https://registry.npmjs.org/{self.name}/-/{self.name}-{self.version}.tgz"


PACKAGES = [
    Package(
        "preact",
        "11.2.0",
        "sha512-/HfHI/7N84e6GrWBJ3J280z3mLaRJiDcSvj/A+y/4AbLnND/1UlGHe1sR6oYuTGwId0nP7dqDU9OnLxMPZ7xBg==",
        {"package/dist/preact.mjs": "preact.mjs", "package/hooks/dist/hooks.mjs": "preact-hooks.mjs"},
        {"package/LICENSE": "preact.LICENSE"},
        {"preact-hooks.mjs": ('from"preact"', 'from"./preact.mjs"')},
    ),
    Package(
        "htm",
        "3.1.1",
        "sha512-983Vyg8NwUE7JkZ6NmOqpCZ+sh1bKv2iYTlUkzlWmA5JD2acKoxd4KVxbMmxX/85mtfdnDmTFoNKcg5DGAvxNQ==",
        {"package/dist/htm.mjs": "htm.mjs"},
        {"package/LICENSE": "htm.LICENSE"},
    ),
    Package(
        "marked",
        "18.2.1",
        "sha512-ii4bxCTCqqwpT86XZWgJNs+ZnAIZksmLGYMViWA7PDIXYIeNo1x6cDdX3JOip9NM/cI6p8z57FxliACboTruMA==",
        {"package/lib/marked.esm.js": "marked.mjs"},
        {"package/LICENSE": "marked.LICENSE"},
    ),
    Package(
        "dompurify",
        "3.5.0",
        "sha512-LYC0ZkE8P1V42JsRYTwMdme/2ET8SpOc5AA2eOFjP/IadvRd2fwiT4TVz5vkfy0XUx12aS2UaRkTnfVPNOv9vw==",
        {"package/dist/purify.es.mjs": "purify.mjs"},
        {"package/LICENSE": "dompurify.LICENSE"},
    ),
]


def fetch(package: Package) -> bytes:
    with urllib.request.urlopen(package.tarball, timeout=60) as response:  # noqa: S310 - a fixed https URL
        data: bytes = response.read()
    algorithm, _, expected = package.integrity.partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if actual != expected:
        raise SystemExit(f"{package.name} {package.version}: integrity mismatch ({actual})")
    return data


def vendor(package: Package) -> list[str]:
    written = []
    with tarfile.open(fileobj=io.BytesIO(fetch(package))) as tar:
        for source, target in {**package.files, **package.licences}.items():
            member = tar.extractfile(source)
            if member is None:
                raise SystemExit(f"{package.name}: {source} is not a file")
            text = member.read().decode()
            if target in package.rewrites:
                old, new = package.rewrites[target]
                if old not in text:
                    raise SystemExit(f"{package.name}: {old!r} not found in {source}")
                text = text.replace(old, new)
            # The source maps are not shipped: a pointer to one would only be a 404 in dev tools.
            text = re.sub(r"\n?//# sourceMappingURL=\S+\s*$", "\n", text)
            (VENDOR / target).write_text(text)
            written.append(target)
    return written


def main() -> None:
    VENDOR.mkdir(parents=True, exist_ok=True)
    lines = ["# Vendored browser libraries (tools/vendor_console.py writes this file)", ""]
    for package in PACKAGES:
        files = vendor(package)
        lines.append(f"- {package.name} {package.version} ({package.integrity}): {', '.join(files)}")
    (VENDOR / "README.md").write_text("\n".join(lines) + "\n")
    # What tests/unit/test_console_vendor.py checks the served files against, offline.
    sums = [
        f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}"
        for path in sorted(VENDOR.iterdir())
        if path.suffix == ".mjs"
    ]
    (VENDOR / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
