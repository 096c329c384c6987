"""Pixel-space synthesis on the tiny world: captions → prior → decoder → pixels → encoder image
tower, written as `png` + `emb.npy` with the same keys as the embedding path."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from contracts.shards import Manifest, iter_samples
from generators.encoders import Encoder
from generators.pixel import EmbeddingDecoder, load_decoder
from pipeline.runner import LocalExecutor, job_id_for, key_job_id, run_job
from pipeline.spec import SpecError, spec_hash
from pipeline.stages import PixelSynthesizeStage
from tests.conftest import world_spec


def _pixel(world, out, **more):
    return world_spec(world, out, **{"synthesis.space": "pixel", "synthesis.decoder": str(world / "pixel"),
                                     "synthesis.decoder_steps": 3, **more})


def test_pixel_and_embedding_paths_end_to_end(tiny_world, tmp_path):
    world, _ = tiny_world
    emb_spec, pix_spec = world_spec(world, tmp_path / "emb"), _pixel(world, tmp_path / "pix")
    assert spec_hash(emb_spec) != spec_hash(pix_spec) and key_job_id(pix_spec) == job_id_for(emb_spec)
    emb_stats = run_job(emb_spec, executor=LocalExecutor())
    pix_stats = run_job(pix_spec, executor=LocalExecutor())
    assert pix_stats["samples"] == emb_stats["samples"] > 0 and Manifest.load(tmp_path / "pix").complete

    emb_rows, pix_rows = list(iter_samples(tmp_path / "emb")), list(iter_samples(tmp_path / "pix"))
    assert [r["__key__"] for r in pix_rows] == [r["__key__"] for r in emb_rows]  # same keys, same order
    assert [r["txt"] for r in pix_rows] == [r["txt"] for r in emb_rows]
    assert all("png" not in r for r in emb_rows)

    encoder = Encoder(f"local-dir:{world / 'clip'}")
    size = EmbeddingDecoder.from_pretrained(str(world / "pixel")).image_size
    images = [Image.open(io.BytesIO(r["png"])) for r in pix_rows]
    assert all(im.format == "PNG" and im.size == (size, size) and im.mode == "RGB" for im in images)
    stored = np.stack([r["emb.npy"] for r in pix_rows])
    assert stored.dtype == np.float16 and stored.shape == (len(pix_rows), encoder.dim)
    again = encoder.encode_images([im.convert("RGB") for im in images]).numpy()
    np.testing.assert_allclose(stored.astype(np.float32), again, atol=2e-3)  # float16 of unit vectors
    # The pixel embeddings come from images, not from the prior: they differ from the embedding path's.
    assert not np.allclose(stored, np.stack([r["emb.npy"] for r in emb_rows]), atol=1e-2)
    meta = pix_rows[0]["json"]
    assert meta["generator"]["space"] == "pixel" and meta["generator"]["decoder_steps"] == 3
    assert "decoder_seed" in meta and -1.0 <= meta["scores"]["prior_cosine"] <= 1.0

    # Re-running the same pixel spec resumes: nothing is redone, the shards stay as they are.
    before = [s.sha256 for s in Manifest.load(tmp_path / "pix").shards]
    assert run_job(pix_spec, executor=LocalExecutor())["samples"] == pix_stats["samples"]
    assert [s.sha256 for s in Manifest.load(tmp_path / "pix").shards] == before


def test_decoding_is_per_sample_seeded(tiny_world):
    world, _ = tiny_world
    dec = load_decoder(str(world / "pixel"))
    assert isinstance(dec, EmbeddingDecoder)
    emb = torch.nn.functional.normalize(torch.randn(3, dec.dim, generator=torch.Generator().manual_seed(0)), dim=-1)
    whole = dec.decode(emb, [5, 6, 7], steps=3)
    alone = dec.decode(emb[1:2], [6], steps=3)
    assert whole.dtype == np.uint8 and whole.shape == (3, dec.image_size, dec.image_size, 3)
    assert np.abs(whole[1].astype(int) - alone[0]).max() <= 1  # batch size may change float rounding only
    guided = dec.decode(emb[1:2], [6], steps=3, guidance_scale=3.0)
    assert not np.array_equal(guided[0], alone[0])


def test_pixel_spec_validation(tiny_world, tmp_path):
    world, _ = tiny_world
    with pytest.raises(SpecError, match="space 'pixel' needs a decoder"):
        world_spec(world, tmp_path, **{"synthesis.space": "pixel"})
    with pytest.raises(SpecError, match="decoder_steps only apply to space 'pixel'"):
        world_spec(world, tmp_path, **{"synthesis.decoder_steps": 10})
    with pytest.raises(SpecError, match="synthesis.decoder_guidance_scale"):
        _pixel(world, tmp_path, **{"synthesis.decoder_guidance_scale": 0.5})
    with pytest.raises(SpecError, match="synthesis.decoder_steps"):
        _pixel(world, tmp_path, **{"synthesis.decoder_steps": 0})
    # The decoder's settings are part of what a pixel job is; they do not touch an embedding job's hash.
    assert spec_hash(_pixel(world, tmp_path)) != spec_hash(_pixel(world, tmp_path, **{"synthesis.decoder_steps": 4}))


def test_a_decoder_of_another_embedding_size_is_refused(tiny_world, tmp_path):
    from generators.world.pixel_train import PixelConfig, make_unet

    world, _ = tiny_world
    make_unet(PixelConfig(image_size=8, channels=(8,), mid_attention=False), embed_dim=7).save_pretrained(
        str(tmp_path / "dec" / "decoder"))
    (tmp_path / "dec" / "decoder_scheduler").mkdir()
    (tmp_path / "dec" / "decoder_scheduler" / "scheduler_config.json").write_bytes(
        (world / "pixel" / "decoder_scheduler" / "scheduler_config.json").read_bytes())
    spec = _pixel(world, tmp_path / "out", **{"synthesis.decoder": str(tmp_path / "dec")})
    with pytest.raises(ValueError, match="must belong together"):
        PixelSynthesizeStage(spec.synthesis.model_dump())
    with pytest.raises(ValueError, match="cannot load decoder"):
        EmbeddingDecoder.from_pretrained(str(tmp_path))


def test_world_build_records_the_decoder_and_keeps_other_steps(tiny_world):
    from dataclasses import replace

    from generators.world.build import preset

    world, info = tiny_world
    assert info["models"]["pixel"]["path"] == "pixel" and info["models"]["pixel"]["parameters"] > 0
    q = info["quality"]["pixel_decoder"]
    assert set(q) >= {"real", "decoded_from_real_embedding", "decoded_from_prior_sample"}
    assert -1.0 <= q["decoded_from_real_embedding"]["cosine_to_real"] <= 1.0
    assert any(k.startswith("pixel/decoder/") for k in info["hashes"])
    # Changing only the decoder's settings retrains only the decoder: the other steps' markers hold.
    a = preset("tiny", image_size=32)
    b = replace(a, pixel=replace(a.pixel, steps=a.pixel.steps + 1))
    assert a.digest(without=("pixel",)) == b.digest(without=("pixel",)) and a.digest() != b.digest()
    assert (world / "_work" / "clip.done").read_text() == a.digest(without=("pixel",))
