"""Caption cleaning and validation: one raw LLM completion in, one caption (or a drop reason) out.

Pure functions, no model. The shapes handled are those real instruction LLMs write (SmolLM2-135M-Instruct's
answers in tests/pipeline/test_cleaning.py): a preamble (`Caption:`, `Here is a caption:`, `The image caption
will be a simple sentence, which will read: "...`), quotes around the caption, a caption followed by more
sentences or lines, a refusal (`I'm sorry, but I can't ...`), and a caption that never names the concept it
was asked for (`"A golden rectangle"` for a red triangle). Each is *found* always (a flag, counted in the
job's stats) and dropped or kept as the rules say.

Drop reasons: the backend's own (`request_failed`, `bad_response`), `empty`, `refusal`, `truncated`,
`preamble`, `quotes`, `several_sentences`, `too_short`, `too_long`, `off_concept`.
Flags (found, whatever was done): `preamble`, `quotes`, `several_lines`, `several_sentences`, `refusal`,
`off_concept`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

FLAGS = ("preamble", "quotes", "several_lines", "several_sentences", "refusal", "off_concept")


@dataclass(frozen=True)
class CleaningRules:
    """What to do with each shape. `strip`: remove it and keep the caption; `first`: keep the first
    sentence (and line); `keep`: leave the text as it is (several lines joined); `drop`: drop the caption
    with that reason."""

    min_words: int = 2
    max_words: int = 64
    preamble: Literal["strip", "drop"] = "strip"
    quotes: Literal["strip", "drop"] = "strip"
    sentences: Literal["first", "keep", "drop"] = "first"
    refusal: Literal["drop", "keep"] = "drop"
    off_concept: Literal["keep", "drop"] = "keep"


@dataclass(frozen=True)
class Cleaned:
    caption: str | None  # None when dropped
    drop: str | None  # the drop reason, None when kept
    flags: tuple[str, ...] = ()  # every shape found in the raw text (see FLAGS)


# "Caption:", "**Image caption:**", "Here is a short caption for the image:", "Sure! Here's one:",
# "The image caption will be a simple sentence, which will read:" -- a lead-in that ends in a colon and
# talks about the answer rather than the scene.
_LEAD_WORDS = (r"caption|here|sure|certainly|okay|ok|absolutely|image|picture|photo|description|describ|sentence"
               r"|title|answer|output|result|read|response|follow|below|alt text|prompt")
_LEAD_RE = re.compile(rf"^(?P<lead>[^:\n\"<>]{{0,160}}?\b(?:{_LEAD_WORDS})\w*[^:\n\"<>]{{0,80}}?)\s*:\s*", re.I)
_SURE_RE = re.compile(r"^(?:sure|certainly|of course|okay|ok|absolutely)\b[!.,]*\s*", re.I)
_MARKUP_RE = re.compile(r"^[*_#>\s-]+|[*_]+$")
_QUOTES = {'"': '"', "“": "”", "'": "'", "‘": "’", "«": "»", "`": "`"}
_REFUSAL_RE = re.compile(
    r"^(?:i'?m sorry|i am sorry|sorry,|i apologi[sz]e|unfortunately|as an ai\b|as a language model"
    r"|i (?:can ?not|can't|cannot|won't|am unable|'m unable|am not able|'m not able|don't have|do not have))", re.I)
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])[\"”']?\s+(?=[\"“'(]?[A-Z0-9])")


def _strip_markup(text: str) -> str:
    return _MARKUP_RE.sub("", text.strip()).strip()


def strip_preamble(text: str) -> tuple[str, bool]:
    """(text without a lead-in, whether there was one). Only a lead-in that speaks about the caption counts:
    `two shapes: a red circle` is a caption, `Caption: a red circle` has a preamble."""
    text = _strip_markup(text)
    found = False
    while True:
        m = _LEAD_RE.match(text)
        if m and not _REFUSAL_RE.match(text) and len(text) > m.end():
            text, found = _strip_markup(text[m.end():]), True
            continue
        s = _SURE_RE.match(text)
        if s and len(text) > s.end():
            text, found = _strip_markup(text[s.end():]), True
            continue
        return text, found


def strip_quotes(text: str) -> tuple[str, bool]:
    """(text without the quotes around it, whether it had any). An opening quote never closed (a
    completion cut inside the quote) counts; quotes inside the caption stay."""
    t = text.strip()
    if t and t[0] in _QUOTES:
        close = _QUOTES[t[0]]
        end = t.rfind(close, 1)
        if end == -1:
            return t[1:].strip(), True
        inner, rest = t[1:end].strip(), t[end + 1:].strip()
        if inner and (not rest or re.fullmatch(r"[.!?,;]*", rest)):
            return inner, True
        if inner and close not in inner:  # "A red circle." Then more text after it
            return (inner + " " + rest).strip(), True
    return t, False


def split_sentences(text: str) -> list[str]:
    """Sentences of a caption: a break after . ! ? before a capital letter or digit."""
    return [s.strip() for s in _SENTENCE_END_RE.split(text.strip()) if s.strip()]


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL_RE.match(_strip_markup(text)))


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^\w ]+", " ", text.lower()).split())


@lru_cache(maxsize=4096)
def _concept_re(concept: str) -> re.Pattern:
    words = [re.escape(w) for w in _words(concept).split()]
    return re.compile(r"\b" + r" ".join(words) + r"(?:s|es)?\b")  # the last word may be plural


def missing_concepts(caption: str, concepts: Sequence[str]) -> list[str]:
    """The prompted concepts a caption does not name (whole words, in order, last word possibly plural)."""
    text = _words(caption)
    return [c for c in concepts if not _concept_re(c).search(text)]


def clean(text: str, finished: bool = True, rules: CleaningRules = CleaningRules(), concepts: Sequence[str] = (),
          error: str | None = None) -> Cleaned:
    """The caption in one raw completion, or why there is none. FINISHED is False when generation stopped
    at its token limit; CONCEPTS are the concepts the prompt named (empty: not checked)."""
    if error:
        return Cleaned(None, error)
    flags: list[str] = []

    def out(caption: str | None, drop: str | None) -> Cleaned:
        return Cleaned(caption, drop, tuple(dict.fromkeys(flags)))

    lines = [ln for ln in (_strip_markup(x) for x in text.strip().splitlines()) if ln]
    if not lines:
        return out(None, "empty")
    if is_refusal(lines[0]):
        flags.append("refusal")
        if rules.refusal == "drop":
            return out(None, "refusal")
    # A line that is nothing but a lead-in ("Here is a caption:", "Imagined:") introduces the next one.
    first = 0
    while first < len(lines) - 1 and (lines[first].endswith(":") or strip_preamble(lines[first] + " x")[0] == "x"):
        first += 1
    if first:
        flags.append("preamble")
    body, rest = lines[first], lines[first + 1:]
    if rest:
        flags.append("several_lines")
    complete = finished or bool(rest)  # a later line started: the first one is whole
    body, found = strip_preamble(body)
    if found:
        flags.append("preamble")
    if "preamble" in flags and rules.preamble == "drop":
        return out(None, "preamble")
    body, quoted = strip_quotes(body)
    if quoted:
        flags.append("quotes")
        if rules.quotes == "drop":
            return out(None, "quotes")
    sentences = split_sentences(body)
    if len(sentences) > 1:
        flags.append("several_sentences")
        if rules.sentences == "drop":
            return out(None, "several_sentences")
        if rules.sentences == "first":
            body = strip_quotes(sentences[0])[0]
            complete = True  # the first sentence ended before the next began
    if not complete:
        return out(None, "truncated")
    if rules.sentences == "keep" and rest:
        body = " ".join([body, *rest])
    body = body.strip()
    if not body:
        return out(None, "empty")
    n = len(body.split())
    if n < rules.min_words:
        return out(None, "too_short")
    if n > rules.max_words:
        return out(None, "too_long")
    if concepts and missing_concepts(body, concepts):
        flags.append("off_concept")
        if rules.off_concept == "drop":
            return out(None, "off_concept")
    return out(body, None)


def rules_for(captions) -> CleaningRules:
    """The rules of a spec's `captions` section (`min_words`, `max_words` and its `cleaning` rules, if any)."""
    extra = captions.cleaning.model_dump() if getattr(captions, "cleaning", None) is not None else {}
    return CleaningRules(min_words=captions.min_words, max_words=captions.max_words, **extra)


def count_flags(flags) -> dict[str, int]:
    """{flag: count} over comma-separated flag strings (one per caption), in FLAGS order."""
    counts = dict.fromkeys(FLAGS, 0)
    for f in flags:
        for name in filter(None, str(f).split(",")):
            counts[name] = counts.get(name, 0) + 1
    return {k: v for k, v in counts.items() if v}
