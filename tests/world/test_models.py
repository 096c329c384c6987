"""Each world model saves and reloads through the loader a hub model would use, unchanged."""

import json

import numpy as np
import pytest
import torch

from generators.encoders import Encoder, encode_text_tokens
from generators.prior import EmbeddingPrior


def test_world_json_records_figures_versions_and_hashes(tiny_world):
    out, info = tiny_world
    on_disk = json.loads((out / "world.json").read_text())
    assert on_disk["config_hash"] == info["config_hash"]
    q = on_disk["quality"]
    assert set(q["clip_zero_shot"]["all"]) == {"colour", "shape", "n"}
    assert 0 <= q["lm"]["parse_rate"] <= 1 and "held_out_share" in q["lm"]
    pr = q["prior_retrieval"]
    assert pr["chance"] == 0.01 and "true_image" in pr and "prior_guidance_1" in pr
    assert on_disk["versions"]["torch"] and on_disk["versions"]["open_clip_torch"]
    assert any(k.startswith("clip/") for k in on_disk["hashes"])
    assert on_disk["held_out_fraction"] >= 0.15


def test_world_shards_follow_the_contract(tiny_world):
    import webdataset as wds

    from contracts.shards import Manifest, sha256_file

    out, info = tiny_world
    for split in ("pretrain", "train", "val", "test"):
        m = Manifest.load(out / "data" / split)
        assert m.complete and m.samples == info["splits"][split]["samples"]
        for s in m.shards:
            assert sha256_file(out / "data" / split / s.name) == s.sha256
    train = out / "data" / "train"
    rows = list(wds.WebDataset([str(train / s.name) for s in Manifest.load(train).shards], shardshuffle=False).decode("rgb8"))
    r = rows[0]
    assert r["png"].shape == (32, 32, 3)
    assert r["emb.npy"].dtype == np.float16 and r["emb.npy"].shape == (info["models"]["clip"]["embed_dim"],)
    assert r["json"]["source"] == "real" and r["txt"] in r["json"]["captions"]
    held = set(info["held_out_compositions"])
    assert not any(c in held for row in rows for c in row["json"]["concepts"])


def test_clip_reloads_through_open_clip_and_pools_at_eos(tiny_world):
    out, _ = tiny_world
    a, b = Encoder(f"local-dir:{out / 'clip'}"), Encoder(f"local-dir:{out / 'clip'}")
    texts = ["a small red circle in the center", "two large blue stars", ""]
    ea, eb = a.encode_text(texts), b.encode_text(texts)
    assert torch.equal(ea.pooled, eb.pooled)
    ids = a.tokenize(texts)
    eos = a.model.text_eos_id
    assert (ids == eos).sum(1).tolist() == [1, 1, 1]  # the tokenizer appends exactly one end-of-text
    # Tokens after the end of text must not change the pooled embedding (causal tower, eos pooling).
    noisy = ids.clone()
    after = torch.arange(ids.shape[1])[None] > (ids == eos).int().argmax(1, keepdim=True)
    noisy[after] = 7
    assert torch.allclose(encode_text_tokens(a.model, noisy).pooled, ea.pooled, atol=1e-6)
    img = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    assert torch.equal(a.encode_images(img), b.encode_images(img))


def test_clip_trained_in_memory_equals_clip_reloaded(tmp_path, tiny_world):
    import open_clip

    from generators.world.clip import ClipConfig, model_cfg, save_clip

    out, _ = tiny_world
    cfg = ClipConfig(image_size=32, vision_width=8, text_width=32, text_heads=2, embed_dim=16)
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(str(out / "clip"))
    torch.manual_seed(0)
    model = open_clip.CLIP(**model_cfg(cfg, len(tok), tok.eos_token_id, tok.pad_token_id)).eval()
    save_clip(model, model_cfg(cfg, len(tok), tok.eos_token_id, tok.pad_token_id), tmp_path / "c", out / "clip", cfg)
    enc = Encoder(f"local-dir:{tmp_path / 'c'}")
    ids = enc.tokenize(["a red star above a green square"])
    with torch.no_grad():
        assert torch.allclose(model.encode_text(ids), enc.model.encode_text(ids))
        x = torch.randn(2, 3, 32, 32)
        assert torch.allclose(model.encode_image(x), enc.model.encode_image(x))


def test_caption_lm_reloads_through_auto_classes(tiny_world):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = tiny_world
    tok = AutoTokenizer.from_pretrained(str(out / "lm"))
    m1 = AutoModelForCausalLM.from_pretrained(str(out / "lm")).eval()
    m2 = AutoModelForCausalLM.from_pretrained(str(out / "lm")).eval()
    ids = tok("Concepts: red circle\nCaption:", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(m1(ids).logits, m2(ids).logits)
    assert tok.decode(ids[0]) == "Concepts: red circle\nCaption:"
    assert type(tok).__name__ == "PreTrainedTokenizerFast" or tok.is_fast


def test_prior_reloads_and_samples_deterministically(tiny_world):
    out, _ = tiny_world
    enc = Encoder(f"local-dir:{out / 'clip'}")
    text, null = enc.encode_text(["a red circle above a blue star", "two small green squares"]), enc.encode_text([""])
    p1, p2 = EmbeddingPrior.from_pretrained(str(out / "prior")), EmbeddingPrior.from_pretrained(str(out / "prior"))
    a = p1.sample(text, [1, 2], null=null, steps=5, guidance_scale=2.0)
    b = p2.sample(text, [1, 2], null=null, steps=5, guidance_scale=2.0)
    assert torch.equal(a, b) and a.shape == (2, enc.dim)
    assert torch.allclose(a.norm(dim=-1), torch.ones(2), atol=1e-5)
    # a sample depends on its own seed only, not on the rest of its batch
    one = p1.sample(enc.encode_text(["two small green squares"]), [2], null=null, steps=5, guidance_scale=2.0)
    assert torch.allclose(one[0], a[1], atol=1e-5)
    with pytest.raises(ValueError, match="one seed per caption"):
        p1.sample(text, [1], steps=2)
    with pytest.raises(ValueError, match="null"):
        p1.sample(text, [1, 2], steps=2, guidance_scale=3.0)
    with pytest.raises(ValueError, match="cannot load prior"):
        EmbeddingPrior.from_pretrained(str(out / "nowhere"))


def test_second_build_reuses_the_first(tiny_world):

    from generators.world.build import build_world

    out, info = tiny_world
    weights = out / "clip" / "open_clip_model.safetensors"
    before = weights.stat().st_mtime_ns
    again = build_world(out, size="tiny", seed=0, image_size=32)
    assert again == info
    assert weights.stat().st_mtime_ns == before


def test_build_refuses_a_file_as_output(tmp_path):
    from generators.world.build import build_world

    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(NotADirectoryError):
        build_world(f, size="tiny")
    with pytest.raises(ValueError, match="unknown world size"):
        build_world(tmp_path / "w", size="huge")


def test_shape_negatives_swap_only_the_shape():
    from generators.world.annotate import captions, parse
    from generators.world.clip import shape_swapped
    from generators.world.concepts import SHAPES, Obj, Scene

    for scene in (Scene("single", (Obj("red", "star", "small"),), position="top left"),
                  Scene("count", (Obj("blue", "circle", "large"),), count=3),
                  Scene("relation", (Obj("green", "square"), Obj("pink", "hexagon")), relation="above")):
        negs = shape_swapped(scene)
        assert len(negs) == len(captions(scene))  # one list per phrasing, in phrasing order
        for phrasing in negs:
            parsed = [parse(t) for t in phrasing]
            assert sorted(p.objects[0].shape for p in parsed) == sorted(set(SHAPES) - {scene.objects[0].shape})
            for p in parsed:  # everything else as stated by the positive caption
                assert p.objects[0].colour == scene.objects[0].colour and p.objects[1:] == scene.objects[1:]
                assert (p.kind, p.position, p.count, p.relation) == (scene.kind, scene.position, scene.count,
                                                                     scene.relation)


def test_shape_negatives_need_one_list_per_image(tmp_path, tiny_world):
    import numpy as np
    import pytest

    from generators.world.clip import ClipConfig, train_clip

    cfg = ClipConfig(image_size=32, vision_width=8, text_width=32, embed_dim=16, steps=1, batch_size=4,
                     shape_negatives=True)
    with pytest.raises(ValueError, match="one list of hard-negative captions per image"):
        train_clip(tmp_path / "c", np.zeros((4, 32, 32, 3), np.uint8), [["a red star"]] * 4,
                   tiny_world[0] / "_work" / "clip-tokenizer", cfg, negatives=None)


def test_trimmed_text_encoding_matches_open_clip():
    import open_clip
    import torch

    from generators.world.clip import ClipConfig, _encode_text, model_cfg

    torch.manual_seed(0)
    model = open_clip.CLIP(**model_cfg(ClipConfig(text_width=32, text_heads=2, embed_dim=16), 50, 1, 0)).eval()
    ids = torch.randint(2, 50, (4, 16))
    for row, end in enumerate((5, 8, 3, 9)):  # the last end-of-text decides where the batch is cut
        ids[row, end], ids[row, end + 1:] = 1, 0
    assert torch.allclose(_encode_text(model, ids), model.encode_text(ids), atol=1e-5)


def test_mirrored_swaps_left_and_right_only():
    from generators.world.clip import mirrored
    from generators.world.concepts import Obj, Scene

    star = Obj("red", "star", "small")
    assert mirrored(Scene("single", (star,), position="top left")).position == "top right"
    assert mirrored(Scene("single", (star,), position="bottom")).position == "bottom"
    pair = Scene("relation", (star, Obj("blue", "circle")), relation="left of")
    assert mirrored(pair).relation == "right of" and mirrored(Scene("relation", pair.objects, relation="above")) == \
        Scene("relation", pair.objects, relation="above")
    assert mirrored(mirrored(pair)) == pair


def test_empty_share_adds_object_less_renders_with_their_caption_and_negatives():
    from generators.world.annotate import captions, parse
    from generators.world.clip import EMPTY_CAPTION, ClipConfig, clip_training_set
    from generators.world.render import render
    from generators.world.splits import scenes

    rng = np.random.default_rng(0)
    scs = list(scenes("pretrain", 18, 0))
    images = np.stack([np.asarray(render(s, rng, 32)) for s in scs])
    same, caps, negs = clip_training_set(images, scs, ClipConfig(shape_negatives=True), 0)
    assert same is images and caps == [captions(s) for s in scs] and len(negs) == 18  # off: the split unchanged
    more, caps, negs = clip_training_set(images, scs, ClipConfig(shape_negatives=True, empty_share=0.1), 0)
    assert len(more) == len(caps) == len(negs) == 20 and caps[18:] == [[EMPTY_CAPTION]] * 2
    assert (more[:18] == images).all()
    assert more[18:].std(axis=(1, 2)).max() < 8  # the jittered background and its noise alone
    assert all(parse(t) is not None for t in negs[18][0]) and len(negs[18][0]) == 5  # world captions: not empty
    with pytest.raises(ValueError, match="empty_share"):
        clip_training_set(images, scs, ClipConfig(empty_share=1.0), 0)


def test_settings_added_later_leave_built_worlds_hash_alone_at_their_old_value():
    import hashlib
    from dataclasses import asdict, replace

    from generators.world.build import preset

    cfg = preset("quick")
    old = asdict(cfg)
    del old["clip"]["empty_share"], old["clip"]["relation_negatives"]
    assert cfg.digest() == hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:16]
    assert replace(cfg, clip=replace(cfg.clip, empty_share=0.1)).digest() != cfg.digest()
    assert replace(cfg, clip=replace(cfg.clip, relation_negatives=True)).digest() != cfg.digest()


def test_world_config_from_its_record_has_the_same_hash():
    from dataclasses import asdict

    from generators.world.build import WorldConfig, preset

    cfg = preset("quick")
    record = json.loads(json.dumps(asdict(cfg)))  # as world.json stores it: tuples become lists
    assert WorldConfig.from_dict(record) == cfg and WorldConfig.from_dict(record).digest() == cfg.digest()
    del record["clip"]["empty_share"]  # a world built before the option existed: its default
    assert WorldConfig.from_dict(record).clip.empty_share == 0.0


def test_relation_negatives_swap_the_objects_and_the_axis_of_relation_scenes_only():
    from generators.world.annotate import captions, parse
    from generators.world.clip import ClipConfig, hard_negatives, shape_swapped
    from generators.world.concepts import Obj, Scene

    cfg = ClipConfig(shape_negatives=True, relation_negatives=True)
    single = Scene("single", (Obj("red", "star", "small"),), position="top left")
    assert hard_negatives(single, cfg) == shape_swapped(single)
    pair = Scene("relation", (Obj("green", "square"), Obj("pink", "hexagon")), relation="above")
    negs = hard_negatives(pair, cfg)
    assert len(negs) == len(captions(pair)) and all(len(n) == 5 for n in negs)  # the same five slots
    for p, phrasing in enumerate(negs):
        order, axis, *shapes = [parse(t) for t in phrasing]
        assert order.objects == pair.objects[::-1] and order.relation == "above"
        assert axis.objects == pair.objects and axis.relation == "left of"
        assert phrasing[2:] == shape_swapped(pair)[p][:3]
        assert captions(pair)[p] not in phrasing
    with pytest.raises(ValueError, match="relation_negatives needs shape_negatives"):
        from generators.world.clip import clip_training_set
        clip_training_set(np.zeros((1, 8, 8, 3), np.uint8), [pair], ClipConfig(relation_negatives=True), 0)


@pytest.mark.filterwarnings("ignore:The number of unique classes:UserWarning")  # the tiny world: few scenes
def test_relation_probe_reads_the_labels_of_the_embeddings_it_is_given(tiny_world):
    from generators.world.evaluate import relation_probe

    out, _ = tiny_world
    held_out = relation_probe(out)
    assert held_out["test_scenes"] > 0 and held_out["held_out_test_scenes"] > 0
    keys = ("both_objects_in_place", "relation_axis", "both_objects_in_caption_order", "relation_word",
            "unordered_pair")
    for key in keys:
        assert set(held_out[key]) == {"all", "seen", "held_out"} and 0 <= held_out[key]["all"] <= 1
    # Fitted on the scenes it scores, a probe whose labels follow their embeddings fits them all.
    same = relation_probe(out, fit_splits=("test",))
    assert all(same[key]["all"] == 1.0 for key in keys if key not in ("unordered_pair", "relation_axis"))
    # the axis joins two relation words into one class, which a linear probe need not separate as cleanly
    assert same["relation_axis"]["all"] >= 0.9


def test_a_relation_scene_and_its_mirror_wording_have_one_canonical_form():
    from generators.world.concepts import Obj, Scene

    a, b = Obj("red", "star"), Obj("blue", "circle")
    for word, mirror in (("left of", "right of"), ("above", "below")):
        scene = Scene("relation", (a, b), relation=word)
        assert Scene("relation", (b, a), relation=mirror).canonical() == scene == scene.canonical()
        assert Scene("relation", (b, a), relation=word).canonical() != scene
    single = Scene("single", (a,), position="center")
    assert single.canonical() is single
