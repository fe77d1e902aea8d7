"""Token-based chunking of document text with the target model's tokenizer."""

from finetuneflow.core.chunking.chunker import ChunkSettings, TextChunk, chunk_text
from finetuneflow.core.chunking.locate import locate
from finetuneflow.core.chunking.tokens import TokenCounter

__all__ = ["ChunkSettings", "TextChunk", "TokenCounter", "chunk_text", "locate"]
