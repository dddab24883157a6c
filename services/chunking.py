"""Text out of an uploaded file (plain text, Markdown, PDF), split into overlapping chunks for a
knowledge base. Sizes are in characters (Opper's `text_processing.chunk_size`/`chunk_overlap`)."""

from __future__ import annotations

import io
import re

from core.errors import InvalidInput, TooLarge, UnsupportedMediaType

DEFAULT_CHUNK_SIZE = 2000
DEFAULT_CHUNK_OVERLAP = 200
MIN_CHUNK_SIZE = 100
MAX_CHUNK_SIZE = 20_000
# A PDF's text stops here: a few KB of PDF can draw the same content stream on every page (tens of
# MB of text, minutes of CPU), and past these a document would pass the chunk cap anyway.
MAX_PDF_PAGES = 2000
MAX_TEXT_CHARS = 2_000_000

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


def text_of(filename: str, content_type: str, data: bytes) -> str:
    """A file's text: a PDF's pages' text (pypdf), or the bytes as UTF-8 for text and Markdown.
    Anything else is a 415."""
    kind = content_type.split(";")[0].strip().lower()
    if is_pdf(filename, content_type):
        return _pdf_text(data)
    if kind in TEXT_TYPES or kind.startswith("text/") or filename.lower().endswith(TEXT_SUFFIXES):
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInput("the file is not UTF-8 text", field="file") from None
    raise UnsupportedMediaType(
        f"{content_type or 'this type'} cannot be added to a knowledge base: send text, Markdown or PDF"
    )


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if len(reader.pages) > MAX_PDF_PAGES:
            raise TooLarge(f"the PDF has more than {MAX_PDF_PAGES} pages")
        texts: list[str] = []
        total = 0
        for page in reader.pages:
            page_text = (page.extract_text() or "").strip()
            total += len(page_text) + 2
            # Stopped at the first page past the cap: no more pages are extracted.
            if total > MAX_TEXT_CHARS:
                raise TooLarge(f"the PDF's text is longer than {MAX_TEXT_CHARS} characters")
            texts.append(page_text)
        return "\n\n".join(texts)
    except (PdfReadError, ValueError, KeyError, OSError) as exc:
        raise InvalidInput(f"the PDF cannot be read: {exc}", field="file") from None
