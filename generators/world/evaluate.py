"""Quality figures of the world's models, measured on the balanced test split."""

from __future__ import annotations

import numpy as np
import torch

from generators.encoders import Encoder
from generators.prior import EmbeddingPrior
from generators.world.annotate import caption, parse
from generators.world.concepts import POSITIONS, SIZES, Obj, Scene, all_compositions
from generators.world.lm import PROMPT_TEMPLATE


def composition_prototypes(encoder: Encoder) -> torch.Tensor:
    """One text embedding per colour-shape pair: the mean over its single-object captions at
    every size and position (prompt ensembling, as CLIP zero-shot classification does)."""
    protos = []
    for comp in all_compositions():
        colour, shape = comp.split(" ")
        texts = [caption(Scene("single", (Obj(colour, shape, size),), position=p), 0) for size in SIZES for p in POSITIONS]
        e = encoder.encode_text(texts).pooled.mean(0)
        protos.append(e / e.norm())
    return torch.stack(protos)


def clip_zero_shot(encoder: Encoder, image_emb: torch.Tensor, scenes: list[Scene], held_out: set[str],
                   prototypes: torch.Tensor | None = None) -> dict:
    """Zero-shot colour and shape accuracy on the test scenes that show one composition
    (`prototypes`: `composition_prototypes(encoder)`, when already computed)."""
    comps = all_compositions()
    keep = [i for i, s in enumerate(scenes) if s.kind != "relation"]
    protos = composition_prototypes(encoder) if prototypes is None else prototypes
    pred = (image_emb[keep] @ protos.T).argmax(1).tolist()
    rows = [(comps[p].split(" "), scenes[i].objects[0]) for p, i in zip(pred, keep, strict=False)]
    out = {}
    for name, sel in (("all", lambda o: True), ("seen", lambda o: o.composition not in held_out),
                      ("held_out", lambda o: o.composition in held_out)):
        r = [(pc, o) for pc, o in rows if sel(o)]
        out[name] = {"colour": float(np.mean([pc[0] == o.colour for pc, o in r])) if r else None,
                     "shape": float(np.mean([pc[1] == o.shape for pc, o in r])) if r else None, "n": len(r)}
    return out


def lm_quality(lm_dir: str, held_out: set[str], per_composition: int = 4, seed: int = 0) -> dict:
    """Sample captions from the LM for every composition; share the parser accepts, share that
    mention the prompted composition, share that show compositions absent from the train split."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(lm_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(lm_dir).eval()
    newline = tok.convert_tokens_to_ids(tok.tokenize("\n"))[0]
    comps = [c for c in all_compositions() for _ in range(per_composition)]
    prompts = [PROMPT_TEMPLATE.format(concepts=c) for c in comps]
    torch.manual_seed(seed)
    outs = []
    for i in range(0, len(prompts), 64):
        batch = tok(prompts[i:i + 64], return_tensors="pt", padding=True)
        with torch.inference_mode():
            gen = model.generate(**batch, do_sample=True, temperature=1.0, top_k=0, max_new_tokens=32,
                                 eos_token_id=[newline, tok.eos_token_id], pad_token_id=tok.pad_token_id)
        outs += tok.batch_decode(gen[:, batch.input_ids.shape[1]:], skip_special_tokens=True)
    caps = [o.split("\n")[0].strip() for o in outs]
    parsed = [parse(c) for c in caps]
    ok = [p is not None for p in parsed]
    on_concept = [p is not None and c in p.compositions for p, c in zip(parsed, comps, strict=False)]
    novel = [p is not None and any(x in held_out for x in p.compositions) for p in parsed]
    return {"samples": len(caps), "parse_rate": float(np.mean(ok)), "on_concept_rate": float(np.mean(on_concept)),
            "held_out_share": float(np.mean(novel)), "distinct_share": len(set(caps)) / len(caps),
            "examples": caps[:8]}


def retrieval_r1(image_emb: torch.Tensor, captions: list[str], scenes: list[Scene], encoder: Encoder,
                 candidates: int = 100, seed: int = 0) -> np.ndarray:
    """Per sample: is its own caption the nearest among itself and `candidates`-1 captions of
    other test scenes (scenes that differ from it)?"""
    text = encoder.encode_text(captions).pooled
    sims = image_emb @ text.T
    rng = np.random.default_rng(seed)
    keys = [repr(s) for s in scenes]
    hits = np.zeros(len(captions), dtype=bool)
    for i in range(len(captions)):
        others = np.array([j for j in range(len(captions)) if keys[j] != keys[i]])
        pick = rng.choice(others, size=min(candidates - 1, len(others)), replace=False)
        hits[i] = bool((sims[i, pick] < sims[i, i]).all())
    return hits


def prior_quality(encoder: Encoder, prior: EmbeddingPrior, image_emb: torch.Tensor, captions: list[str],
                  scenes: list[Scene], held_out: set[str], guidance: tuple[float, ...] = (1.0, 2.0),
                  steps: int = 25) -> dict:
    text = encoder.encode_text(captions)
    null = encoder.encode_text([""])
    held = np.array([any(c in held_out for c in s.compositions) for s in scenes])

    def split(hits: np.ndarray) -> dict:
        return {"all": float(hits.mean()), "seen": float(hits[~held].mean()),
                "held_out": float(hits[held].mean()) if held.any() else None}

    out = {"candidates": 100, "chance": 1 / 100, "true_image": split(retrieval_r1(image_emb, captions, scenes, encoder))}
    for g in guidance:
        emb = prior.sample(text, list(range(len(captions))), null=null, steps=steps, guidance_scale=g)
        out[f"prior_guidance_{g:g}"] = split(retrieval_r1(emb, captions, scenes, encoder))
        cos = (emb * image_emb).sum(1)
        out[f"prior_guidance_{g:g}"]["cosine_to_true_image"] = float(cos.mean())
    return out


def relation_probe(world, fit_splits: tuple[str, ...] = ("pretrain", "train"), test_split: str = "test") -> dict:
    """What the image embeddings of a built world's relation scenes encode: logistic-regression probes fitted
    on FIT_SPLITS' relation scenes, scored on TEST_SPLIT's (all / seen / held-out scenes).

    - `both_objects_in_place`: each object's composition, the left (or upper) one first (`Scene.canonical`);
      `relation_axis`: left-right or above-below — what the image shows;
    - `both_objects_in_caption_order`, `relation_word`: the same read in the reference caption's wording. The
      world says "A left of B" and "B right of A" of one image at random, so an image settles neither: the
      word is right at most half the time and the caption's order is a coin flip. (Before stop 21 of round 2
      only these were reported, and read as the embedding not knowing where the objects stand.)
    - `unordered_pair`: the two compositions in either order (one-vs-rest, the top two)."""
    from pathlib import Path

    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from contracts.shards import iter_tar, shard_paths
    from generators.world.concepts import Scene

    def rows(*splits):
        s = [x for sp in splits for p in shard_paths(Path(world) / "data" / sp) for x in iter_tar(p)
             if x["json"]["scene"]["kind"] == "relation"]
        scenes = [Scene.from_dict(x["json"]["scene"]) for x in s]
        return (np.stack([x["emb.npy"] for x in s]).astype(np.float32), scenes,
                np.array([bool(x["json"].get("held_out")) for x in s]))

    X, scenes, _ = rows(*fit_splits)
    Xt, scenes_t, held = rows(test_split)

    def probe():  # standardised features: a probe reads directions, whatever the embedding's scale
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, C=10))

    def fit(label) -> np.ndarray:
        """Whether the probe fitted to LABEL(scene) on the fit splits gets each test scene's label."""
        return probe().fit(X, [label(sc) for sc in scenes]).predict(Xt) == np.array([label(sc) for sc in scenes_t])

    def both(form) -> np.ndarray:
        return fit(lambda sc: form(sc).compositions[0]) & fit(lambda sc: form(sc).compositions[1])
    comps = sorted({c for sc in scenes + scenes_t for c in sc.compositions})
    y = np.zeros((len(X), len(comps)))
    for i, sc in enumerate(scenes):
        y[i, [comps.index(c) for c in sc.compositions]] = 1
    top = np.argsort(-OneVsRestClassifier(probe()).fit(X, y).predict_proba(Xt), 1)[:, :2]
    pair = np.array([{comps[t[0]], comps[t[1]]} == set(sc.compositions) for t, sc in zip(top, scenes_t)])

    def split(hits):
        return {"all": float(hits.mean()), "seen": float(hits[~held].mean()) if (~held).any() else None,
                "held_out": float(hits[held].mean()) if held.any() else None}
    return {"train_scenes": len(X), "test_scenes": len(Xt), "held_out_test_scenes": int(held.sum()),
            "both_objects_in_place": split(both(Scene.canonical)),
            "relation_axis": split(fit(lambda sc: sc.canonical().relation)),
            "both_objects_in_caption_order": split(both(lambda sc: sc)),
            "relation_word": split(fit(lambda sc: sc.relation)), "unordered_pair": split(pair)}
