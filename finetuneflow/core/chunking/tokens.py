"""Token counting with the target model's own tokenizer (tokenizer.json via `tokenizers`)."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

TOKENIZER_FILE = "tokenizer.json"


class TokenCounter:
    """Counts tokens and maps them to character offsets, without special tokens.

    Offsets are Python character offsets into the encoded string (not UTF-8 byte offsets). With a
    byte-level BPE, the byte pieces of one multibyte character share that character's offsets, so
    several consecutive tokens may report the same or overlapping spans.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        # A tokenizer.json may carry truncation or padding settings; either would falsify counts.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer

    @classmethod
    def from_model_dir(cls, path: Path) -> TokenCounter:
        """Load `tokenizer.json` from a model folder (or the file itself)."""
        path = Path(path)
        file = path if path.is_file() else path / TOKENIZER_FILE
        if not file.is_file():
            raise FileNotFoundError(
                f"No {TOKENIZER_FILE} in {path}. The chunker needs the model's fast tokenizer "
                f"file; download the complete model folder, or pick a model that ships one."
            )
        try:
            tokenizer = Tokenizer.from_file(str(file))
        except Exception as exc:  # the Rust side raises a bare Exception
            raise ValueError(f"Could not read the tokenizer {file}: {exc}") from exc
        return cls(tokenizer)

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """(start, end) character offsets of each token of `text`."""
        return self._tokenizer.encode(text, add_special_tokens=False).offsets
