"""Text out of an uploaded file (plain text, Markdown, PDF), split into overlapping chunks for a
knowledge base. Sizes are in characters (Opper's `text_processing.chunk_size`/`chunk_overlap`)."""

from __future__ import annotations

import asyncio
import json
import re
import sys

from core.errors import InvalidInput, TooLarge, UnsupportedMediaType

DEFAULT_CHUNK_SIZE = 2000
DEFAULT_CHUNK_OVERLAP = 200
MIN_CHUNK_SIZE = 100
MAX_CHUNK_SIZE = 20_000
# A PDF's text stops here: a few KB of PDF can draw the same content stream on every page (tens of
# MB of text, minutes of CPU), and past these a document would pass the chunk cap anyway.
MAX_PDF_PAGES = 2000
MAX_TEXT_CHARS = 2_000_000
# A PDF is read in a child process that is killed past this many seconds (a thread cannot be
# stopped, and one page can hold a content stream of tens of MB).
PDF_TIMEOUT_S = 60.0
# ... and whose address space is capped (RLIMIT_AS) at this many bytes: a few KB of PDF can make
# its reader build hundreds of MB (a content stream inflated from a small compressed one, a page
# tree of millions of objects), and the server's memory is every request's. The interpreter and
# pypdf take about 60 MB of it; the rest is the reading's, far more than a PDF within
# KNOWLEDGE_MAX_FILE_BYTES and MAX_TEXT_CHARS needs.
PDF_MAX_MEMORY_BYTES = 1024 * 1024 * 1024

TEXT_TYPES = {"text/plain", "text/markdown", "text/x-markdown"}
TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".text")
PDF_TYPES = {"application/pdf", "application/x-pdf"}

# Where a chunk prefers to end, best first: a paragraph, a line, a sentence, a word.
_BREAKS = (re.compile(r"\n\s*\n"), re.compile(r"\n"), re.compile(r"[.!?]\s"), re.compile(r"\s"))


def check_sizes(chunk_size: int, chunk_overlap: int) -> None:
    """At least MIN_CHUNK_SIZE, and an overlap of at most half a chunk: an overlap near the chunk's
    size moves each chunk a few characters on, multiplying a document's text (and embedding calls)
    by up to the chunk size."""
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise InvalidInput(
            f"chunk_size must be from {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE}", field="chunk_size"
        )
    if not 0 <= chunk_overlap <= chunk_size // 2:
        raise InvalidInput(
            "chunk_overlap must be at least 0 and at most half of chunk_size", field="chunk_overlap"
        )


def split(text: str, chunk_size: int, chunk_overlap: int, max_chunks: int | None = None) -> list[str]:
    """Chunks of at most `chunk_size` characters, each starting `chunk_overlap` characters before
    the previous one ended (so a sentence cut at a border is whole in one of them), ending at a
    paragraph, line, sentence or word break in the chunk's second half where there is one. More
    than `max_chunks` is a 413 (stopped there, before the rest is split)."""
    text = text.strip()
    if not text:
        return []
    chunks: list[str] = []
    start = 0
    while start < len(text):
        if max_chunks is not None and len(chunks) >= max_chunks:
            raise TooLarge(
                f"the document makes more than {max_chunks} chunks (KNOWLEDGE_MAX_CHUNKS_PER_DOCUMENT): "
                "split it, or use a larger chunk_size"
            )
        end = min(start + chunk_size, len(text))
        if end < len(text):
            end = _break_before(text, start, end)
        piece = text[start:end].strip()
        if piece:
            chunks.append(piece)
        if end >= len(text):
            break
        # Always forward, even when the overlap is most of a chunk that ended early at a break.
        start = max(end - chunk_overlap, start + 1)
    return chunks


def _break_before(text: str, start: int, end: int) -> int:
    half = start + (end - start) // 2
    for pattern in _BREAKS:
        found = [m.end() for m in pattern.finditer(text, half, end)]
        if found:
            return found[-1]
    return end


def is_pdf(filename: str, content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() in PDF_TYPES or filename.lower().endswith(".pdf")


async def text_of(filename: str, content_type: str, data: bytes) -> str:
    """A file's text: a PDF's pages' text (pypdf, in a child process with a deadline), or the
    bytes as UTF-8 for text and Markdown. Anything else is a 415."""
    kind = content_type.split(";")[0].strip().lower()
    if is_pdf(filename, content_type):
        return await _pdf_text_in_child(data)
    if kind in TEXT_TYPES or kind.startswith("text/") or filename.lower().endswith(TEXT_SUFFIXES):
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInput("the file is not UTF-8 text", field="file") from None
    raise UnsupportedMediaType(
        f"{content_type or 'this type'} cannot be added to a knowledge base: send text, Markdown or PDF"
    )


# The child's program: self-contained (pypdf only), the PDF on stdin, one JSON line out. Its memory
# is capped first; running out of it is answered by bytes made beforehand (a MemoryError leaves
# nothing to build a message with).
_PDF_CHILD = """
import io, json, os, resource, sys
max_pages, max_chars, max_memory = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
OUT_OF_MEMORY = json.dumps({"out_of_memory": max_memory}).encode()
resource.setrlimit(resource.RLIMIT_AS, (max_memory, max_memory))
try:
    from pypdf import PdfReader
    reader = PdfReader(io.BytesIO(sys.stdin.buffer.read()))
    if len(reader.pages) > max_pages:
        out = {"too_large": f"the PDF has more than {max_pages} pages"}
    else:
        texts, total, out = [], 0, None
        for page in reader.pages:
            text = (page.extract_text() or "").strip()
            total += len(text) + 2
            if total > max_chars:  # stopped at the first page past the cap
                out = {"too_large": f"the PDF's text is longer than {max_chars} characters"}
                break
            texts.append(text)
        out = out or {"text": "\\n\\n".join(texts)}
except MemoryError:
    reader = texts = out = None
    os.write(1, OUT_OF_MEMORY)
    os._exit(0)
except Exception as exc:
    out = {"unreadable": f"{type(exc).__name__}: {exc}"}
sys.stdout.write(json.dumps(out))
"""


async def _pdf_text_in_child(data: bytes) -> str:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _PDF_CHILD,
        str(MAX_PDF_PAGES),
        str(MAX_TEXT_CHARS),
        str(PDF_MAX_MEMORY_BYTES),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _ = await asyncio.wait_for(child.communicate(data), PDF_TIMEOUT_S)
    except TimeoutError:
        raise TooLarge(f"the PDF's text took longer than {PDF_TIMEOUT_S:g} s to read") from None
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    try:
        answer = json.loads(out)
    except ValueError:
        # No answer: the reader died (a crash past the memory cap in C code, a signal).
        raise InvalidInput(
            f"the PDF cannot be read (its reader stopped with exit code {child.returncode})", field="file"
        ) from None
    if "out_of_memory" in answer:
        raise TooLarge(
            f"the PDF needs more than {int(answer['out_of_memory']) // (1024 * 1024)} MB of memory to read "
            "(PDF_MAX_MEMORY_BYTES)"
        )
    if "too_large" in answer:
        raise TooLarge(answer["too_large"])
    if "unreadable" in answer:
        raise InvalidInput(f"the PDF cannot be read: {answer['unreadable']}", field="file")
    return str(answer["text"])
