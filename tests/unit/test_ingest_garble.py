"""looks_garbled: quiet on real multilingual text, loud on extraction garbage."""

from __future__ import annotations

import pytest

from finetuneflow.core.ingest import looks_garbled

CHINESE = "这是一个用于测试的中文句子，我们希望它被正确地识别出来。今天天气很好，我们去公园散步吧。"
JAPANESE = "これは日本語のテキストです。文字化けのテストをしています。東京は大きな都市です。"
RUSSIAN = "Привет, как дела? Это тестовый текст на русском языке для проверки кодировки."

REAL_TEXT = {
    "english": "The quick brown fox jumps over the lazy dog, again and again.",
    "german": "Größere Übungen für Äpfel und Öl sind schön, sagte die Straße.",
    "french": "Le cœur a ses raisons que la raison ne connaît point. Déjà vu, très élégant.",
    "icelandic": "Þetta er íslenskur texti með ð og þ og æ og ö, sérstaklega á.",
    "chinese": CHINESE,
    "japanese": JAPANESE,
    "korean": "안녕하세요, 이것은 한국어 텍스트입니다. 오늘 날씨가 좋습니다.",
    "russian": RUSSIAN,
    "greek": "Καλημέρα κόσμε, αυτό είναι ένα δοκιμαστικό κείμενο στα ελληνικά.",
    "arabic": "مرحبا بالعالم، هذا نص تجريبي باللغة العربية لاختبار الكشف.",
    "arabic with vowels": "حَبيبي habibi حَبيبي، السَّلامُ عَلَيْكُم وَرَحْمَةُ اللهِ",
    "hebrew": "שלום עולם, זהו טקסט בדיקה בעברית עם כמה מילים נוספות.",
    "hindi": "नमस्ते दुनिया, यह एक परीक्षण पाठ है जो हिंदी में लिखा गया है।",
    "thai": "สวัสดีชาวโลก นี่คือข้อความทดสอบภาษาไทย",
    "chinese with latin": "使用LLaMA模型进行微调，支持QLoRA和LoRA方法，以及DPO训练。",
    "multilingual": "English: Hello World Arabic: مرحبا بالعالم Russian: Привет, мир 你好世界",
    "math": "Sei f: X → Y stetig, x ∈ X, dann gilt f(x) ≤ ∑ aᵢ für alle ε > 0 und δ > 0.",
    "units": "Der Kondensator hat 10 µF und 5 µH, also 3 µs; 1ª edição, 2º lugar.",
    "emoji": "Great job 🎉🚀 thanks 👍 see you soon ✨ at the meetup",
    "numbers": "2019 2020 2021 | 1.234,56 € | 98,7 % | 12:30 | +49 (0) 30 1234567",
    "table of contents": "1.2 Metrische Räume . . . . . . . . . . . . . . . . . . . . 6",
    "too short to judge": "\ufffd\ufffd",
}

GARBAGE = {
    "chinese read as latin-1": CHINESE.encode("utf-8").decode("latin-1"),
    "chinese read as cp1252": CHINESE.encode("utf-8").decode("cp1252", errors="replace"),
    "gbk chinese read as latin-1": CHINESE.encode("gbk").decode("latin-1"),
    "japanese read as cp1252": JAPANESE.encode("utf-8").decode("cp1252", errors="replace"),
    "japanese read as shift_jis": JAPANESE.encode("utf-8").decode("shift_jis", errors="replace"),
    "russian read as cp1252": RUSSIAN.encode("utf-8").decode("cp1252", errors="replace"),
    "russian read as cp1251": RUSSIAN.encode("utf-8").decode("cp1251", errors="replace"),
    "cp1251 russian read as cp1252": RUSSIAN.encode("cp1251").decode("cp1252"),
    "replacement characters": "Hello \ufffd\ufffd\ufffd\ufffd wor\ufffd\ufffd\ufffd text",
    "private use": "\ue000\ue001\ue002 \ue003\ue004 \ue005\ue006\ue007 abc def",
    "controls": "a\x01\x02\x03b\x04\x05 c\x06\x07\x08 d\x0e\x0f\x10",
    "symbols only": '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~ !"#$%&()*+ <<>> ++',
    "script soup": "Thе quісk brоwn fоx јumps оvеr thе lаzy dоg аgаіn аnd аgаіn",
}


@pytest.mark.parametrize("text", REAL_TEXT.values(), ids=REAL_TEXT.keys())
def test_real_text_is_not_garbled(text: str) -> None:
    assert looks_garbled(text) is None


@pytest.mark.parametrize("text", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_is_detected(text: str) -> None:
    reason = looks_garbled(text)
    assert reason
    assert isinstance(reason, str)


def test_a_long_real_text_stays_quiet_and_a_long_garbled_one_does_not() -> None:
    real = " ".join(REAL_TEXT.values()) * 500  # sampled, not scanned whole
    assert looks_garbled(real) is None
    assert looks_garbled(real + GARBAGE["chinese read as latin-1"] * 10000)


def test_empty_and_whitespace() -> None:
    assert looks_garbled("") is None
    assert looks_garbled(" \n\t  \n") is None
