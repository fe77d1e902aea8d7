"""Token-based chunker: invariants over generated texts, boundary preferences, locate()."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from finetuneflow.core.chunking import ChunkSettings, TextChunk, TokenCounter, chunk_text, locate
from finetuneflow.core.chunking.chunker import END_WINDOW, HEADING_WINDOW, START_TOLERANCE

# Re-encoding a chunk can differ from the whole-text encoding by a token or two at each edge.
EDGE_SLACK = 4

WORDS = (
    "the model reads each document and learns from short examples about storage training "
    "data Straße über naïve café résumé Ångström x² — “quoted” (brackets) 3.14 e.g. U.S.A"
)
LATIN = WORDS.split()
CJK_SENTENCES = [
    "敏捷的棕色狐狸跳过了懒狗",
    "这是一个用于测试的句子",
    "これは日本語の文です",
    "모델은 문서를 읽습니다",
]
SCRIPTS = ["مرحبا بالعالم", "नमस्ते दुनिया", "😀 👩‍💻 🇫🇷", "Привет мир", "שלום עולם"]
# Words the test tokenizer knows (about one token each with their leading space): boundary tests
# build texts from them so that sentences and paragraphs fit in a cut window.
CHEAP_WORDS = "the model document and examples about storage data training language"
CHEAP = CHEAP_WORDS.split()
SENTENCE_ENDS = [". ", "! ", "? ", '." ', ".) ", "… "]
PARAGRAPH_BREAKS = ["\n\n", "\n\n\n", "\r\n\r\n", " \n \n", "\n\t\n"]


@pytest.fixture(scope="module")
def counter(tiny_model_dir: Path) -> TokenCounter:
    return TokenCounter.from_model_dir(tiny_model_dir)


# --- text generators ---------------------------------------------------------------------------


def make_sentence(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.15:
        return rng.choice(CJK_SENTENCES) + rng.choice("。！？")
    if roll < 0.22:
        return rng.choice(SCRIPTS) + rng.choice(["। ", "؟ ", ". "])
    words = [rng.choice(LATIN) for _ in range(rng.randint(2, 18))]
    return " ".join(words).capitalize() + rng.choice(SENTENCE_ENDS)


def make_paragraph(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 6)):
        parts.append(make_sentence(rng))
        if rng.random() < 0.1:
            parts.append("\n")
    return "".join(parts).strip()


def make_document(seed: int, paragraphs: int = 60) -> tuple[str, list[int]]:
    """Varied prose with headings; returns the text and the heading offsets."""
    rng = random.Random(seed)
    text = "  " if rng.random() < 0.5 else ""  # sometimes leading whitespace
    headings = []
    for index in range(paragraphs):
        if index and rng.random() < 0.15:
            headings.append(len(text))
            text += f"## Section {index}: {rng.choice(LATIN)}" + rng.choice(PARAGRAPH_BREAKS)
        text += make_paragraph(rng) + rng.choice(PARAGRAPH_BREAKS)
    return text + rng.choice(["", "\n", "   "]), headings


# --- invariants -----------------------------------------------------------------------------


def assert_invariants(
    text: str, chunks: list[TextChunk], counter: TokenCounter, settings: ChunkSettings
) -> None:
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    covered = 0
    for chunk in chunks:
        assert chunk.text == text[chunk.char_start : chunk.char_end]
        assert chunk.text and chunk.text == chunk.text.strip(), "edges must not be whitespace"
        assert chunk.token_count == counter.count(chunk.text)
        assert chunk.token_count <= settings.max_tokens
        assert text[covered : chunk.char_start].strip() == "", "non-space text left uncovered"
        covered = max(covered, chunk.char_end)
    assert text[covered:].strip() == ""
    for previous, current in itertools.pairwise(chunks):
        assert previous.char_start < current.char_start
        assert previous.char_end < current.char_end


def overlap_tokens(
    text: str, previous: TextChunk, current: TextChunk, counter: TokenCounter
) -> int:
    return counter.count(text[current.char_start : previous.char_end].strip())


SETTINGS = [
    ChunkSettings(16, 0),
    ChunkSettings(16, 7),
    ChunkSettings(64, 16),
    ChunkSettings(200, 50),
    ChunkSettings(512, 100),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: f"{s.max_tokens}-{s.overlap_tokens}")
def test_invariants_on_generated_documents(counter: TokenCounter, settings: ChunkSettings) -> None:
    for seed in range(8):
        text, headings = make_document(seed)
        with_headings = chunk_text(text, counter, settings, heading_offsets=headings)
        assert_invariants(text, with_headings, counter, settings)
        without = chunk_text(text, counter, settings)
        assert_invariants(text, without, counter, settings)


@pytest.mark.parametrize(
    "settings", SETTINGS[1:], ids=lambda s: f"{s.max_tokens}-{s.overlap_tokens}"
)
def test_overlap_stays_near_the_setting(counter: TokenCounter, settings: ChunkSettings) -> None:
    tolerance = max(1, int(settings.overlap_tokens * START_TOLERANCE))
    for seed in range(6):
        text, _ = make_document(seed)
        chunks = chunk_text(text, counter, settings)
        for previous, current in itertools.pairwise(chunks):
            shared = overlap_tokens(text, previous, current, counter)
            assert shared <= settings.overlap_tokens + tolerance + EDGE_SLACK
            # A chunk shorter than the overlap (cut early at a paragraph) cannot give it all.
            if previous.token_count > settings.overlap_tokens + tolerance + EDGE_SLACK:
                assert current.char_start < previous.char_end, "consecutive chunks must overlap"
                assert shared >= settings.overlap_tokens - tolerance - EDGE_SLACK


def test_zero_overlap_chunks_do_not_overlap(counter: TokenCounter) -> None:
    text, _ = make_document(3)
    chunks = chunk_text(text, counter, ChunkSettings(64, 0))
    for previous, current in itertools.pairwise(chunks):
        assert current.char_start >= previous.char_end


def test_output_is_deterministic(counter: TokenCounter, tiny_model_dir: Path) -> None:
    text, headings = make_document(11)
    settings = ChunkSettings(100, 20)
    first = chunk_text(text, counter, settings, heading_offsets=headings)
    again = chunk_text(
        text, TokenCounter.from_model_dir(tiny_model_dir), settings, heading_offsets=headings
    )
    assert first == again


# --- boundary preferences ---------------------------------------------------------------------


def cheap_words(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(CHEAP) for _ in range(rng.randint(low, high)))


def test_cuts_fall_on_paragraph_breaks_when_paragraphs_are_short(counter: TokenCounter) -> None:
    rng = random.Random(5)
    text = "\n\n".join(cheap_words(rng, 3, 12).capitalize() + "." for _ in range(300))
    settings = ChunkSettings(128, 20)
    chunks = chunk_text(text, counter, settings)
    assert_invariants(text, chunks, counter, settings)
    for chunk in chunks[:-1]:
        assert text[chunk.char_end : chunk.char_end + 2] == "\n\n", chunk.text[-30:]


def test_line_breaks_beat_sentence_ends_and_sentence_ends_beat_spaces(
    counter: TokenCounter,
) -> None:
    rng = random.Random(8)
    lines = [" ".join(cheap_words(rng, 4, 6) + "." for _ in range(3)) for _ in range(150)]
    text = "\n".join(lines)
    chunks = chunk_text(text, counter, ChunkSettings(128, 0))
    assert all(text[c.char_end] == "\n" for c in chunks[:-1])
    prose = text.replace("\n", " ")
    chunks = chunk_text(prose, counter, ChunkSettings(128, 0))
    assert all(c.text.endswith(".") for c in chunks)


def test_sections_shorter_than_half_a_chunk_give_one_cut_per_heading(
    counter: TokenCounter,
) -> None:
    rng = random.Random(2)
    text, headings = "", []
    for index in range(40):
        headings.append(len(text))
        text += f"# Part {index}\n\n{cheap_words(rng, 5, 40).capitalize()}.\n\n"
    settings = ChunkSettings(200, 40)
    chunks = chunk_text(text, counter, settings, heading_offsets=headings)
    assert_invariants(text, chunks, counter, settings)
    heading_set = set(headings)
    for chunk in chunks:
        assert chunk.char_start in heading_set, "each chunk starts at a heading"
    for chunk in chunks[:-1]:
        assert text[chunk.char_end :].lstrip().startswith("# Part"), "and ends before one"


def test_no_heading_sits_inside_an_overlap_or_just_before_a_chunk_end(
    counter: TokenCounter,
) -> None:
    settings = ChunkSettings(96, 30)
    near_end = int(settings.max_tokens * (HEADING_WINDOW - END_WINDOW)) - EDGE_SLACK
    for seed in range(10):
        text, headings = make_document(seed, paragraphs=80)
        chunks = chunk_text(text, counter, settings, heading_offsets=headings)
        assert_invariants(text, chunks, counter, settings)
        for previous, current in itertools.pairwise(chunks):
            inside_overlap = [h for h in headings if current.char_start < h < previous.char_end]
            assert not inside_overlap, "the next chunk should have started at that heading"
            for heading in headings:
                if previous.char_start < heading < previous.char_end:
                    tail = counter.count(text[heading : previous.char_end])
                    assert tail >= near_end, "the chunk should have ended at that heading"


def test_heading_offsets_may_point_at_whitespace_before_the_heading(
    counter: TokenCounter,
) -> None:
    body = " ".join(["the model"] * 30) + "."
    text = f"{body}\n\n# Title\n\n{body}"
    at_gap = text.index("\n\n# Title")
    chunks = chunk_text(text, counter, ChunkSettings(100, 10), heading_offsets=[at_gap, -5, 10**9])
    assert chunks[1].text.startswith("# Title")


# --- hard texts -------------------------------------------------------------------------------


def test_chinese_cuts_after_full_stops(counter: TokenCounter) -> None:
    rng = random.Random(1)
    characters = "的是一个用于测试句子模型文档数据训练语言"  # 1 to 3 tokens each
    sentences = ["".join(rng.choices(characters, k=rng.randint(3, 10))) for _ in range(300)]
    text = "".join(sentence + rng.choice("。！？") for sentence in sentences)
    settings = ChunkSettings(200, 90)  # cut windows of 50 and 45 tokens > any sentence
    chunks = chunk_text(text, counter, settings)
    assert_invariants(text, chunks, counter, settings)
    assert len(chunks) > 5
    for chunk in chunks[:-1]:
        assert chunk.text[-1] in "。！？"
    for chunk in chunks[1:]:
        assert text[chunk.char_start - 1] in "。！？", "overlaps start at a sentence too"


def test_text_without_any_punctuation_or_spaces(counter: TokenCounter) -> None:
    rng = random.Random(4)
    cjk = "".join(rng.choice("敏捷的棕色狐狸跳过了懒狗这是一个用于测试句子") for _ in range(3000))
    emoji = "".join(rng.choice("😀😃👩‍💻🇫🇷✨") for _ in range(1500))
    for text in (cjk, emoji):
        settings = ChunkSettings(64, 10)
        chunks = chunk_text(text, counter, settings)
        assert_invariants(text, chunks, counter, settings)
        assert all(c.token_count >= settings.max_tokens * 0.6 for c in chunks[:-1])


def test_text_without_sentence_breaks_cuts_between_words(counter: TokenCounter) -> None:
    rng = random.Random(6)
    text = cheap_words(rng, 4000, 4000)
    settings = ChunkSettings(64, 24)
    chunks = chunk_text(text, counter, settings)
    assert_invariants(text, chunks, counter, settings)
    for chunk in chunks[:-1]:
        assert text[chunk.char_end] == " "
    for chunk in chunks[1:]:
        assert text[chunk.char_start - 1] == " "


def test_a_single_huge_word(counter: TokenCounter) -> None:
    text = "supercalifragilistic" * 2000
    settings = ChunkSettings(50, 10)
    chunks = chunk_text(text, counter, settings)
    assert_invariants(text, chunks, counter, settings)
    total = counter.count(text)
    assert len(chunks) <= total / (settings.max_tokens * 0.75 - settings.overlap_tokens * 1.25) + 2


def test_short_and_blank_texts(counter: TokenCounter) -> None:
    settings = ChunkSettings()
    assert chunk_text("", counter, settings) == []
    assert chunk_text(" \n\t\u3000 ", counter, settings) == []
    [only] = chunk_text("  Hello, world.\n", counter, settings)
    assert (only.text, only.char_start, only.char_end) == ("Hello, world.", 2, 15)
    assert only.ordinal == 0 and only.token_count == counter.count("Hello, world.")


def test_text_with_special_token_strings(counter: TokenCounter) -> None:
    text = "Plain words <|im_end|> and more words <|im_start|>user " * 200
    settings = ChunkSettings(40, 8)
    assert_invariants(text, chunk_text(text, counter, settings), counter, settings)


# --- other tokenizer families -------------------------------------------------------------------


def train_tokenizer(kind: str) -> Tokenizer:
    """A small tokenizer of another family, trained in milliseconds."""
    corpus = [make_paragraph(random.Random(seed)) for seed in range(200)]
    if kind == "wordpiece":  # BERT-like: whitespace is dropped, so offsets leave gaps
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.NFKC()
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordPieceTrainer(vocab_size=400, special_tokens=["[UNK]"])
    else:  # SentencePiece-like: "▁" marks spaces, unknown characters fall back to bytes
        tokenizer = Tokenizer(models.BPE(byte_fallback=True))
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        bytes_ = [f"<0x{i:02X}>" for i in range(256)]
        trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<unk>", *bytes_])
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return tokenizer


@pytest.mark.parametrize("kind", ["wordpiece", "metaspace"])
def test_other_tokenizer_families(kind: str) -> None:
    counter = TokenCounter(train_tokenizer(kind))
    settings = ChunkSettings(80, 20)
    for seed in range(3):
        text, headings = make_document(seed, paragraphs=30)
        chunks = chunk_text(text, counter, settings, heading_offsets=headings)
        assert_invariants(text, chunks, counter, settings)


# --- token counter and settings -----------------------------------------------------------------


def test_offsets_are_character_offsets(counter: TokenCounter) -> None:
    text = "héllo wörld 敏捷的 😀 x"
    offsets = counter.offsets(text)
    assert all(0 <= start <= end <= len(text) for start, end in offsets)
    assert "".join(text[s:e] for s, e in _distinct(offsets)) == text
    assert ("ö", 7, 8) in [(text[s:e], s, e) for s, e in offsets]


def _distinct(offsets: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Offsets with the byte pieces of one character (same or overlapping span) merged."""
    merged: list[tuple[int, int]] = []
    for start, end in offsets:
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def test_counter_ignores_truncation_in_tokenizer_json(tiny_model_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(8)
    text = "The quick brown fox jumps over the lazy dog. " * 10
    assert TokenCounter(tokenizer).count(text) > 8


def test_counter_loads_a_folder_or_the_file(tiny_model_dir: Path, tmp_path: Path) -> None:
    text = "Fine-tuning adapts a model."
    from_dir = TokenCounter.from_model_dir(tiny_model_dir).count(text)
    assert TokenCounter.from_model_dir(tiny_model_dir / "tokenizer.json").count(text) == from_dir
    with pytest.raises(FileNotFoundError, match=r"No tokenizer\.json in"):
        TokenCounter.from_model_dir(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="Could not read the tokenizer"):
        TokenCounter.from_model_dir(tmp_path)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (ChunkSettings(8, 0), "between 16 and"),
        (ChunkSettings(100, 50), "less than half"),
        (ChunkSettings(100, -1), "cannot be negative"),
        (ChunkSettings(100.0, 10), "whole number"),  # type: ignore[arg-type]
        (ChunkSettings(True, 0), "whole number"),  # type: ignore[arg-type]
    ],
)
def test_settings_validation(settings: ChunkSettings, message: str, counter: TokenCounter) -> None:
    with pytest.raises(ValueError, match=message):
        settings.validate()
    with pytest.raises(ValueError, match=message):
        chunk_text("some text", counter, settings)


def test_default_settings_are_valid() -> None:
    ChunkSettings().validate()
    ChunkSettings(16, 7).validate()


# --- locate -------------------------------------------------------------------------------------

SEGMENTS = [
    (0, 100, 1, None),
    (100, 250, 1, "Introduction"),
    (250, 400, 2, "Introduction"),
    (400, 420, None, "Introduction"),  # e.g. a figure caption without a page
    (420, 900, 3, "Methods"),
    (900, 1000, 4, "Results"),
]


@pytest.mark.parametrize(
    ("span", "expected"),
    [
        ((0, 50), (1, 1, None)),
        ((0, 150), (1, 1, None)),  # 100 chars unlabelled beat 50 chars of Introduction
        ((90, 300), (1, 2, "Introduction")),
        ((300, 700), (2, 3, "Methods")),
        ((405, 415), (None, None, "Introduction")),
        ((850, 1000), (3, 4, "Results")),  # 50 vs 100 chars
        ((800, 1000), (3, 4, "Methods")),  # 100 vs 100: the earlier wins
        ((250, 250), (2, 2, "Introduction")),  # empty span: where it sits
        ((5000, 6000), (None, None, None)),
    ],
)
def test_locate(span: tuple[int, int], expected: tuple[object, object, object]) -> None:
    assert locate(*span, SEGMENTS) == expected


@dataclass(frozen=True)
class Segment:
    start: int
    end: int
    page: int | None
    section: str | None


def test_locate_accepts_segment_objects_and_maps_real_chunks(counter: TokenCounter) -> None:
    text, headings = make_document(21)
    bounds = [0, *headings, len(text)]
    segments = []
    for number, (start, end) in enumerate(itertools.pairwise(bounds)):
        section = None if number == 0 else text[start : text.index("\n", start)].strip()
        middle = (start + end) // 2  # two pages per section
        segments += [Segment(start, middle, 2 * number, section)]
        segments += [Segment(middle, end, 2 * number + 1, section)]
    chunks = chunk_text(text, counter, ChunkSettings(128, 20), heading_offsets=headings)
    for chunk in chunks:
        first, last, section = locate(chunk.char_start, chunk.char_end, segments)
        assert first is not None and last is not None and first <= last
        touching = [s for s in segments if s.start < chunk.char_end and s.end > chunk.char_start]
        assert (first, last) == (touching[0].page, touching[-1].page)
        assert section in {s.section for s in touching}
