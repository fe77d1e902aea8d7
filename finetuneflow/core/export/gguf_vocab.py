"""SentencePiece-style tokenizers (Mistral v0.3's, Gemma 3's) as llama.cpp's "llama" vocabulary.

Their tokenizer.json is a BPE with byte fallback over text whose spaces became "▁", with
"<0xXX>" tokens for bytes no token covers. llama.cpp's SentencePiece tokenizer merges, at each
step, the adjacent pair whose joined text is the token with the highest score; HF's BPE merges
the pair with the lowest merge rank. So a token's score here is minus the rank of the first merge
that makes it: the same order, as long as the merges list every pair that joins to a token, which
tokenizers converted from SentencePiece do. What llama.cpp's reference converter writes for these
families from a tokenizer.model (tokenizer.ggml.model "llama", pre-tokenizer "default", the
token types, add_space_prefix) is written here from tokenizer.json alone.

llama.cpp puts a "▁" before the text at the start and after every special token when
add_space_prefix is on, and nowhere when it is off: what a tokenizer.json converted with the
legacy rule does (its normalizer prepends "▁" to every text). A Metaspace pre-tokenizer that
prepends it follows other rules. "first" (transformers' non-legacy conversion, Mistral v0.3's
form) puts it only before a text that starts the input with neither a space nor a special
token: written with add_space_prefix off, every text that starts with a special token or a
space, so every chat prompt, tokenizes as in HF, and a bare text such as "Hello" lacks its
leading "▁" (with it on, every text after a special token would get a "▁" HF does not give, as
in GGUFs from llama.cpp's own converter). "always" puts it after each special token unless the
text starts with a space, which neither setting reproduces for chat layouts such as
"[INST] question", so it is refused.
"""

from __future__ import annotations

from typing import Any

SPACE = "\u2581"
_BYTE_TOKEN_LENGTH = len("<0x00>")
# Added tokens that look special although not marked so (as llama.cpp's converter judges them).
_SPECIAL_LOOKING = ("<pad>", "<mask>")


def is_sentencepiece_style(tokenizer: dict[str, Any]) -> bool:
    model = tokenizer.get("model") or {}
    return model.get("type") == "BPE" and bool(model.get("byte_fallback"))


def space_prefix_problem(tokenizer: dict[str, Any]) -> str | None:
    """Why llama.cpp would split this SentencePiece-style tokenizer's text differently from HF;
    None when it would not."""
    if (tokenizer.get("model") or {}).get("ignore_merges"):
        return "it ignores its merges for whole words, which llama.cpp's SentencePiece does not"
    pre = tokenizer.get("pre_tokenizer") or {}
    if pre.get("type") == "Metaspace" and (scheme := _prepend_scheme(pre)) == "always":
        return (f"its Metaspace step puts \"▁\" before the text by a rule (prepend_scheme "
                f"{scheme!r}) that llama.cpp does not follow (it puts one before every text "
                "after a special token, or none, even where the text starts with a space)")
    if adds_space_prefix(tokenizer) is None:
        return "its spaces are not turned into \"▁\" the way llama.cpp's SentencePiece does"
    return None


def adds_space_prefix(tokenizer: dict[str, Any]) -> bool | None:
    """Whether HF puts "▁" before every piece of text (llama.cpp's add_space_prefix); None for a
    shape llama.cpp cannot reproduce."""
    normalizers = _normalizers(tokenizer.get("normalizer"))
    pre = tokenizer.get("pre_tokenizer") or {}
    if not normalizers and pre.get("type") == "Metaspace" and pre.get("replacement") == SPACE \
            and not pre.get("split", True):
        # "first": off, so text after a special token gets no "▁" (see the module's doc)
        return False if _prepend_scheme(pre) in ("never", "first") else None
    # Gemma's word split runs on text whose spaces are already "▁": it splits nothing
    if pre and not (pre.get("type") == "Split" and pre.get("pattern") == {"String": " "}):
        return None
    kinds = [(step.get("type"), step.get("prepend") or step.get("content")) for step in
             normalizers]
    if kinds == [("Prepend", SPACE), ("Replace", SPACE)]:  # Llama 2's and Mistral's legacy form
        return _replaces_space(normalizers[1])
    if kinds == [("Replace", SPACE)]:  # Gemma's: no space before the text
        return False if _replaces_space(normalizers[0]) else None
    return None


def _replaces_space(step: dict[str, Any]) -> bool | None:
    return True if step.get("pattern") == {"String": " "} else None


def _prepend_scheme(metaspace: dict[str, Any]) -> str:
    scheme = metaspace.get("prepend_scheme")
    if scheme is None:  # files from before tokenizers 0.15
        return "always" if metaspace.get("add_prefix_space", True) else "never"
    return str(scheme)


def _normalizers(normalizer: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not normalizer:
        return []
    if normalizer.get("type") == "Sequence":
        steps: list[dict[str, Any]] = normalizer.get("normalizers", [])
        return steps
    return [normalizer]


def sentencepiece_vocab(tokenizer: dict[str, Any], size: int
                        ) -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and llama.cpp token types for ids 0..size-1 (unused ids padded)."""
    import gguf

    model = tokenizer["model"]
    by_id = {index: token for token, index in model["vocab"].items()}
    added = {entry["id"]: entry for entry in tokenizer.get("added_tokens", [])}
    ranks = _merge_ranks(model.get("merges") or [])
    lowest = -float(len(ranks) + 1)  # below every merge: never preferred to one HF would make
    types = gguf.TokenType
    tokens, scores, kinds = [], [], []
    for index in range(size):
        score, kind = lowest, types.NORMAL
        if index in added:
            token = added[index]["content"]
            if added[index].get("special") or _looks_special(token):
                kind = types.CONTROL
            else:  # llama.cpp matches user-defined tokens in text that still has its spaces
                token, kind = token.replace(SPACE, " "), types.USER_DEFINED
        elif index in by_id:
            token = by_id[index]
            if token == model.get("unk_token"):
                kind = types.UNKNOWN
            elif _is_byte_token(token):
                kind = types.BYTE
            elif token in ranks:
                score = -float(ranks[token])
        else:
            token, kind = f"[PAD{index}]", types.UNUSED
        tokens.append(token)
        scores.append(score)
        kinds.append(int(kind))
    return tokens, scores, kinds


def _merge_ranks(merges: list[Any]) -> dict[str, int]:
    """Each token made by a merge -> the rank of the first merge that makes it."""
    ranks: dict[str, int] = {}
    for rank, merge in enumerate(merges):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        ranks.setdefault(left + right, rank)
    return ranks


def _is_byte_token(token: str) -> bool:
    return (len(token) == _BYTE_TOKEN_LENGTH and token.startswith("<0x") and token.endswith(">")
            and all(digit in "0123456789ABCDEFabcdef" for digit in token[3:5]))


def _looks_special(token: str) -> bool:
    return token in _SPECIAL_LOOKING or (token.startswith("<|") and token.endswith("|>")) \
        or (token.startswith("<unused") and token.endswith(">"))


def write_sentencepiece_vocab(writer: Any, tokenizer: dict[str, Any], size: int) -> None:
    """The "llama" vocabulary; the caller checked `space_prefix_problem` first."""
    tokens, scores, kinds = sentencepiece_vocab(tokenizer, size)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(kinds)
    writer.add_add_space_prefix(bool(adds_space_prefix(tokenizer)))
