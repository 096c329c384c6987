"""`synth2 vlm eval`: caption real images through the encoder, score the captions.

- BLEU-4 and CIDEr(-D) with pycocoevalcap against every reference the sample carries (`json.captions`,
  else its `txt`). Captions are lower-cased and split on non-alphanumerics (pycocoevalcap's PTB tokenizer
  needs Java; this is the same normalisation for these captions).
- On the embedded world (samples whose json has a `scene`): the world's caption parser turns each
  generated caption back into a scene, and each attribute is scored — colour, shape, size, count,
  relation, position, the colour-shape composition, the whole scene — plus the composition accuracy
  on test images whose compositions the human-annotated split never showed (`json.held_out`), the same
  split by scene kind (`composition_by_kind`: a two-object relation scene is twice as likely to hold a
  held-out composition, and far harder to caption, so the held-out figure mixes kinds unevenly), and the
  composition accuracy per concept (`per_concept`: the samples whose `json.concepts` name it).
- A relation scene can be said two ways ("a red star left of a blue circle" = "a blue circle right of a red
  star"), and its reference uses one at random, so no image tells which. Its colour, shape and composition
  are scored as the set of its two objects, and `relation` is the arrangement: the relation and which named
  object stands where, in either wording (`Scene.canonical`). Results before stop 21 of round 2 (December 2026)
  compared both in the reference's order and the relation word alone, which counted a correct caption in the
  other wording as wrong on all three.
"""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import numpy as np
import torch

from vlm.data import read_all
from vlm.model import SynthVLM

log = logging.getLogger(__name__)

ATTRIBUTES = ("colour", "shape", "size", "count", "relation", "position", "composition", "scene")


def tokenize(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def coco_scores(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """Corpus BLEU-1..4 and CIDEr-D from pycocoevalcap."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"need as many predictions as reference lists, and at least one "
                         f"(got {len(predictions)} and {len(references)})")
    res = {i: [tokenize(p) or "empty"] for i, p in enumerate(predictions)}
    gts = {i: [tokenize(r) for r in refs] for i, refs in enumerate(references)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    return {"bleu1": float(bleu[0]), "bleu4": float(bleu[3]), "cider": float(cider)}


def attribute_hits(pred, true) -> dict[str, bool | None]:
    """Which attributes of `true` (a world Scene) the parsed prediction gets right; None = not applicable."""
    hits: dict[str, bool | None] = dict.fromkeys(ATTRIBUTES)
    t_objs = true.objects
    p_objs = pred.objects if pred is not None else ()
    same_n = len(p_objs) == len(t_objs)
    if true.kind == "relation":
        # Which two objects, in either order: "A left of B" and "B right of A" are one image, and the caption's
        # order is the relation's business (below), so colours, shapes and compositions are compared as sets.
        def same(f) -> bool:
            return same_n and sorted(map(f, p_objs)) == sorted(map(f, t_objs))
        hits["colour"], hits["shape"] = same(lambda o: o.colour), same(lambda o: o.shape)
        hits["composition"] = same(lambda o: o.composition)
    else:
        hits["colour"] = same_n and all(p.colour == t.colour for p, t in zip(p_objs, t_objs))
        hits["shape"] = same_n and all(p.shape == t.shape for p, t in zip(p_objs, t_objs))
        hits["composition"] = bool(hits["colour"] and hits["shape"])
    c_pred, c_true = (pred.canonical() if pred is not None else None), true.canonical()  # one wording (a relation)
    hits["scene"] = c_pred is not None and c_pred == c_true
    if true.kind in ("single", "count"):
        hits["size"] = pred is not None and pred.kind in ("single", "count") and p_objs[0].size == t_objs[0].size
        hits["count"] = pred is not None and pred.kind in ("single", "count") and pred.count == true.count
    if true.kind == "relation":  # the arrangement: which of the two named objects stands where, either wording
        hits["relation"] = (c_pred is not None and c_pred.kind == "relation" and c_pred.relation == c_true.relation
                            and c_pred.compositions == c_true.compositions)
    if true.kind == "single":
        hits["position"] = pred is not None and pred.kind == "single" and pred.position == true.position
    return hits


def world_scores(predictions: list[str], metas: list[dict]) -> dict | None:
    """Per-attribute accuracy and held-out composition accuracy, for samples that carry a world scene."""
    from generators.world.annotate import parse
    from generators.world.concepts import Scene

    rows = [(p, m) for p, m in zip(predictions, metas) if "scene" in m]
    if not rows:
        return None
    parsed = [parse(p) for p, _ in rows]
    hits = [attribute_hits(s, Scene.from_dict(m["scene"])) for s, (_, m) in zip(parsed, rows)]
    acc = {}
    for a in ATTRIBUTES:
        vals = [h[a] for h in hits if h[a] is not None]
        acc[a] = {"accuracy": float(np.mean(vals)) if vals else None, "n": len(vals)}
    per_concept: dict[str, list[int]] = {}  # composition -> [samples showing it, samples captioned right]
    for h, (_, m) in zip(hits, rows):
        for c in dict.fromkeys(m.get("concepts") or []):
            n = per_concept.setdefault(c, [0, 0])
            n[0] += 1
            n[1] += int(h["composition"])
    held = [h["composition"] for h, (_, m) in zip(hits, rows) if m.get("held_out")]
    seen = [h["composition"] for h, (_, m) in zip(hits, rows) if not m.get("held_out")]
    by_kind: dict[str, dict[str, list[bool]]] = {}  # kind -> seen / held_out -> composition hits
    for h, (_, m) in zip(hits, rows):
        k = by_kind.setdefault(m["scene"]["kind"], {"seen": [], "held_out": []})
        k["held_out" if m.get("held_out") else "seen"].append(bool(h["composition"]))
    return {"parse_rate": float(np.mean([s is not None for s in parsed])), "attributes": acc,
            "held_out_composition": {"accuracy": float(np.mean(held)) if held else None, "n": len(held)},
            "seen_composition": {"accuracy": float(np.mean(seen)) if seen else None, "n": len(seen)},
            "composition_by_kind": {kind: {part: {"accuracy": float(np.mean(v)) if v else None, "n": len(v)}
                                           for part, v in parts.items()} for kind, parts in sorted(by_kind.items())},
            "per_concept": {c: {"n": n, "correct": k, "accuracy": k / n} for c, (n, k) in sorted(per_concept.items())}}


def image_embeddings(samples: list[dict], encoder_name: str | None, use_images: bool, batch: int = 256) -> torch.Tensor:
    """Embeddings of the samples' images through the checkpoint's encoder (the real path: pixels → image
    tower), or the stored `emb.npy` when there are no images, no recorded encoder, or `use_images` is off."""
    if use_images and encoder_name and all("png" in s for s in samples):
        from PIL import Image

        from generators.encoders import Encoder

        enc = Encoder(encoder_name)
        out = []
        for i in range(0, len(samples), batch):
            ims = [Image.open(io.BytesIO(s["png"])).convert("RGB") for s in samples[i:i + batch]]
            out.append(enc.encode_images(ims))
        return torch.cat(out)
    return torch.from_numpy(np.stack([s["emb"] for s in samples]))


def evaluate(model: str | Path | SynthVLM, data: str, beams: tuple[int, ...] = (1, 3), batch_size: int = 128,
             use_images: bool = True, limit: int | None = None, out: str | Path | None = None) -> dict:
    """Caption every sample of `data` (a shard directory or URL) with greedy / beam decoding and score them."""
    vlm = model if isinstance(model, SynthVLM) else SynthVLM.from_pretrained(model)
    vlm.eval()
    samples = read_all(data)[:limit]
    if not samples:
        raise ValueError(f"no samples in {data!r}")
    emb = image_embeddings(samples, vlm.config.encoder, use_images)
    refs = [s["meta"].get("captions") or [s["txt"]] for s in samples]
    metas = [s["meta"] for s in samples]
    result: dict = {"data": str(data), "samples": len(samples), "encoder": vlm.config.encoder,
                    "images_encoded": bool(use_images and vlm.config.encoder and "png" in samples[0]), "decoding": {}}
    for nb in beams:
        preds: list[str] = []
        for i in range(0, len(samples), batch_size):
            preds += vlm.generate(emb[i:i + batch_size], num_beams=nb)
        name = "greedy" if nb == 1 else f"beam{nb}"
        r = coco_scores(preds, refs)
        w = world_scores(preds, metas)
        if w is not None:
            r["world"] = w
        r["examples"] = [{"prediction": p, "reference": rf[0]} for p, rf in zip(preds[:8], refs[:8])]
        result["decoding"][name] = r
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1))
    return result


def summary_table(result: dict) -> str:
    """A markdown table of the evaluation: one row per decoding."""
    head = "| decoding | BLEU-4 | CIDEr | parse | colour | shape | size | count | relation | composition | held-out comp. |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in result["decoding"].items():
        w = r.get("world")
        cells = [name, f"{r['bleu4']:.3f}", f"{r['cider']:.3f}"]
        if w:
            a = w["attributes"]
            cells += [f"{w['parse_rate']:.2f}"] + [_pct(a[k]["accuracy"]) for k in
                                                   ("colour", "shape", "size", "count", "relation", "composition")]
            cells.append(_pct(w["held_out_composition"]["accuracy"]))
        else:
            cells += ["–"] * 8
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"
