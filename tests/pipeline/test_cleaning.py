"""Caption cleaning on the shapes real instruction LLMs write. The raw strings are SmolLM2-135M-Instruct's
answers (issue #16 and bench/results/smollm2_captions.json), quoted as they came."""

import pytest

from generators.cleaning import CleaningRules, clean, missing_concepts, split_sentences, strip_preamble, strip_quotes

RT_BC = ("red triangle", "blue circle")


def test_issue_answers():
    # 'The image caption will be a simple sentence, which will read: "Rebel Alliance, ...' (cut at the token limit)
    r = clean('The image caption will be a simple sentence, which will read: "Rebel Alliance, the', finished=False,
              concepts=RT_BC)
    assert (r.caption, r.drop) == (None, "truncated") and {"preamble", "quotes"} <= set(r.flags)
    r = clean('The image caption will be a simple sentence, which will read: "Rebel Alliance, forever."', concepts=RT_BC)
    assert r.caption == "Rebel Alliance, forever." and r.flags == ("preamble", "quotes", "off_concept")
    r = clean('"A golden rectangle"', concepts=RT_BC)
    assert r.caption == "A golden rectangle" and r.drop is None and "off_concept" in r.flags
    assert clean('"A golden rectangle"', rules=CleaningRules(off_concept="drop"), concepts=RT_BC).drop == "off_concept"
    r = clean("A red triangle and a blue circle.", concepts=RT_BC)
    assert r == type(r)("A red triangle and a blue circle.", None, ())


@pytest.mark.parametrize("raw,caption,flags", [
    ("Caption: a small red circle", "a small red circle", ("preamble",)),
    ("**Image caption:** A red circle on a white page.", "A red circle on a white page.", ("preamble",)),
    ("Here is a short caption for the image:\n\n\"A red circle glowing at dusk.\"", "A red circle glowing at dusk.",
     ("preamble", "quotes")),
    ("Sure! Here's one: A red circle in the sky.", "A red circle in the sky.", ("preamble",)),
    ("Imazed:\n\nA gleaming red circle, situated high above the horizon", "A gleaming red circle, situated high above "
     "the horizon", ("preamble",)),
    ("two shapes: a red circle and a cat", "two shapes: a red circle and a cat", ()),  # not a lead-in
])
def test_preambles(raw, caption, flags):
    r = clean(raw, concepts=("red circle",))
    assert (r.caption, r.flags) == (caption, flags)


def test_preamble_drop_rule():
    assert clean("Caption: a small red circle", rules=CleaningRules(preamble="drop")).drop == "preamble"
    assert clean("a small red circle", rules=CleaningRules(preamble="drop")).caption == "a small red circle"


def test_quotes():
    assert strip_quotes('"A golden rectangle"') == ("A golden rectangle", True)
    assert strip_quotes("“A red star.”") == ("A red star.", True)
    assert strip_quotes('"Unclosed and cut') == ("Unclosed and cut", True)
    assert strip_quotes('a "quoted" word') == ('a "quoted" word', False)
    assert clean('"A red star"', rules=CleaningRules(quotes="drop")).drop == "quotes"


def test_several_sentences():
    raw = ("A golden kumaru, a humble gem in the midst of a bustling market in New Delhi. It's a dream come true "
           "for those who are curious about the world of prec")
    assert split_sentences("A red star. It shines! 3 more?") == ["A red star.", "It shines!", "3 more?"]
    r = clean(raw, finished=False)  # cut, but the first sentence is whole
    assert r.caption == "A golden kumaru, a humble gem in the midst of a bustling market in New Delhi."
    assert "several_sentences" in r.flags
    assert clean(raw, finished=True, rules=CleaningRules(sentences="drop")).drop == "several_sentences"
    assert clean(raw, finished=True, rules=CleaningRules(sentences="keep")).caption == raw
    assert clean(raw, finished=False, rules=CleaningRules(sentences="keep")).drop == "truncated"
    lines = "A red star.\nA blue circle."
    assert clean(lines).caption == "A red star." and "several_lines" in clean(lines).flags
    assert clean(lines, rules=CleaningRules(sentences="keep")).caption == "A red star. A blue circle."


@pytest.mark.parametrize("raw", ["I'm sorry, but I can't create images.", "I cannot help with that request.",
                                 "As an AI, I do not see pictures.", "Unfortunately, I am unable to draw."])
def test_refusals(raw):
    assert clean(raw).drop == "refusal"
    kept = clean(raw, rules=CleaningRules(refusal="keep", sentences="keep"))
    assert kept.caption == raw and "refusal" in kept.flags


def test_concepts_and_lengths():
    assert missing_concepts("Three red triangles beside a blue circle", RT_BC) == []
    assert missing_concepts("a triangle in red, a pink circle", RT_BC) == list(RT_BC)
    assert missing_concepts("The `cyan` triangle", ("cyan triangle",)) == []
    assert clean("red", rules=CleaningRules(min_words=2)).drop == "too_short"
    assert clean(" ".join(["w"] * 9), rules=CleaningRules(max_words=8)).drop == "too_long"
    assert clean("   \n ").drop == "empty"
    assert clean("x", error="request_failed").drop == "request_failed"
    assert strip_preamble("Caption: Caption: a red star") == ("a red star", True)
