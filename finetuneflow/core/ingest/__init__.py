"""Document loaders: PDF, Word (.docx), plain text and Markdown to clean, segmented text.

Pure Python (pypdf, python-docx, charset-normalizer): no Qt, no database, no ML stack.
"""

from .detect import SUPPORTED_EXTENSIONS, detect_kind
from .garble import looks_garbled
from .loader import load_document
from .model import Document, IngestLimits, Segment
from .normalise import normalise_text

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "Document",
    "IngestLimits",
    "Segment",
    "detect_kind",
    "load_document",
    "looks_garbled",
    "normalise_text",
]
