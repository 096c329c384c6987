"""The selection step of a synthesize job: job-wide dedup and balancing over the caption chunks,
written back per chunk (`stages/selection-K.npz`: kept index, matched concepts, nearest cosine).

The algorithms are `pipeline/dedup.py`'s: `select_local` in one process for the local executor and,
under Ray, in one Ray task for a job up to `ONE_TASK_MAX_ROWS` requests; `select_ray` (map_batches +
group-bys, nothing collected in the driver beyond small tables) under Ray for larger jobs. All give
the same kept set. Returns {"kept": kept rows per chunk, "stats": counts}.
"""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np

from contracts.storage import Store
from pipeline.job import JobContext
from pipeline.prompts import RequestPlan
from pipeline.spec import parse_spec
from pipeline.tasks import caption_chunk_name, npz_bytes, selection_chunk_name


def select(ctx: JobContext, n_chunks: int) -> dict:
    if not getattr(ctx.executor, "distributed", False):
        return _select_local(ctx, n_chunks)
    if len(RequestPlan(ctx.spec)) <= one_task_max_rows():  # small enough for one worker: try it there
        sel = ctx.executor.call(_select_one_task, ctx.store.url, ctx.spec.model_dump(mode="json"), n_chunks,
                                ctx.layout["chunk_rows"])
        if sel is not None:
            return sel
    return _select_ray(ctx, n_chunks)


def load_chunk(store: Store, plan: RequestPlan, k: int) -> dict[str, np.ndarray]:
    """Caption chunk K with the `prompt_concepts` (JSON) of its requests, as selection reads it."""
    c = store.load_npz(caption_chunk_name(k))
    names = plan.concepts(c["index"])
    as_json = {t: json.dumps(list(t)) for t in set(names)}
    c["prompt_concepts"] = np.array([as_json[t] for t in names], dtype=object)
    c["caption"] = c["caption"].astype(object)
    c["drop"] = c["drop"].astype(object)
    return c


def write_chunk_selection(store: Store, k: int, index: np.ndarray, matched: np.ndarray, nearest: np.ndarray) -> int:
    order = np.argsort(index, kind="stable")
    store.write_bytes(npz_bytes(index=np.asarray(index, dtype=np.int64)[order],
                                matched=np.asarray(matched, dtype=str)[order] if len(order) else np.array([], dtype=str),
                                nearest=np.asarray(nearest, dtype=np.float32)[order]), selection_chunk_name(k))
    return len(order)


# A job of at most this many caption requests, and at most ONE_TASK_MAX_EMB_BYTES of text embeddings, is
# selected by one Ray task (the same algorithm as the local loop's, on a worker, never in the driver):
# Ray Data's seven executions and four shuffles cost about 3.3 s of overhead at 48,000 rows on 2 cores,
# where the whole selection's compute is 0.7 s. Larger jobs take the distributed path (`_select_ray`),
# whose memory per worker is bounded. Both give the same kept set (tests/pipeline/test_scale.py).
ONE_TASK_MAX_ROWS = 200_000
ONE_TASK_MAX_EMB_BYTES = 256 << 20


def one_task_max_rows() -> int:
    """`ONE_TASK_MAX_ROWS`, or SYNTH2_SELECT_ONE_TASK_MAX_ROWS (0: always the distributed path)."""
    import os

    return int(os.environ.get("SYNTH2_SELECT_ONE_TASK_MAX_ROWS", ONE_TASK_MAX_ROWS))


def _select_one_task(url: str, spec_json: dict, n_chunks: int, rows: int) -> dict | None:
    """A Ray task: the whole selection in this worker, if the embeddings fit ONE_TASK_MAX_EMB_BYTES
    (known from the first chunk's width); None (nothing written) if not."""
    spec, store = parse_spec(spec_json), Store(url)
    if n_chunks:
        width = int(np.prod(store.load_npz(caption_chunk_name(0), keys=("text_emb",))["text_emb"].shape[1:]))
        if len(RequestPlan(spec)) * width * 4 > ONE_TASK_MAX_EMB_BYTES:  # float32 in the greedy
            return None
    return _select_all(store, spec, n_chunks, rows)


def _select_local(ctx: JobContext, n_chunks: int) -> dict:
    return _select_all(ctx.store, ctx.spec, n_chunks, ctx.layout["chunk_rows"])


def _select_all(store: Store, spec, n_chunks: int, rows: int) -> dict:
    from pipeline.dedup import SelectionConfig, select_local

    plan = RequestPlan(spec)
    parts = [load_chunk(store, plan, k) for k in range(n_chunks)]
    keys = ("index", "caption", "drop", "text_emb", "prompt_concepts")
    cap = {key: np.concatenate([p[key] for p in parts]) for key in keys} if parts else {
        "index": np.zeros(0, np.int64), "caption": np.array([], dtype=object), "drop": np.array([], dtype=object),
        "text_emb": np.zeros((0, 1), np.float16), "prompt_concepts": np.array([], dtype=object)}
    sel = select_local(cap, SelectionConfig.from_spec(spec))
    chunk_of = np.asarray(sel.keep, dtype=np.int64) // rows
    kept = []
    for k in range(n_chunks):
        m = chunk_of == k
        kept.append(write_chunk_selection(store, k, np.asarray(sel.keep)[m], np.asarray(sel.matched)[m],
                                          np.asarray(sel.nearest)[m]))
    store.save_npz("stages/selection.npz", **sel.to_npz_dict(), stats=np.array(json.dumps(sel.stats)))
    return {"kept": kept, "stats": sel.stats}


BLOCK_ROWS = 4096


@lru_cache(maxsize=4)
def _plan(spec_json: str) -> RequestPlan:
    return RequestPlan(parse_spec(json.loads(spec_json)))


def _load_chunks(batch: dict[str, np.ndarray], spec_json: str, store: str) -> dict[str, np.ndarray]:
    """Ray Data stage (tasks, not an actor pool: a long-lived actor's CPU would starve the hash
    shuffle's aggregators and the tasks feeding them): chunk ids in, those chunks' caption rows
    (with prompt_concepts) out."""
    st, plan = Store(store), _plan(spec_json)
    parts = [load_chunk(st, plan, int(k)) for k in batch["chunk"]]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _count_drops(batch: dict[str, np.ndarray], store: str) -> dict[str, np.ndarray]:
    """Ray Data stage: chunk ids in, their rows' drop reasons counted (only the `drop` arrays are decoded)."""
    from collections import Counter

    st = Store(store)
    c = Counter(str(d) for k in batch["chunk"] for d in st.load_npz(caption_chunk_name(int(k)), keys=("drop",))["drop"])
    return {"drop": np.array(list(c), dtype=object), "n": np.array(list(c.values()), dtype=np.int64)}


def _write_chunk_selections(group: dict[str, np.ndarray], store: str, rows: int) -> dict[str, np.ndarray]:
    """Ray Data group stage: one chunk's kept rows in, `stages/selection-K.npz` written, its size out."""
    k = int(group["index"][0]) // rows
    n = write_chunk_selection(Store(store), k, group["index"], group["matched"], group["nearest"])
    return {"chunk": np.array([k]), "kept": np.array([n])}


def _select_ray(ctx: JobContext, n_chunks: int) -> dict:
    import ray

    from pipeline.dedup import SelectionConfig, select_ray

    store, rows = ctx.store, ctx.layout["chunk_rows"]
    spec_json = json.dumps(ctx.spec.model_dump(mode="json"), sort_keys=True)
    # blocks of whole chunks, about BLOCK_ROWS rows each: the group-bys' cost in the driver grows with blocks
    per = max(1, BLOCK_ROWS // rows)
    blocks = max(1, -(-n_chunks // per))
    ids = ray.data.from_items([{"chunk": k} for k in range(n_chunks)], override_num_blocks=blocks)
    # the drop reasons' counts from the `drop` arrays alone, so the chunks are decoded once, by the selection
    drops: dict[str, int] = {}
    for b in ids.map_batches(_count_drops, fn_kwargs={"store": store.url}, batch_size=per,
                             batch_format="numpy").iter_batches(batch_size=None, batch_format="numpy"):
        for d, c in zip(b["drop"], b["n"], strict=True):
            drops[str(d)] = drops.get(str(d), 0) + int(c)
    ds = ids.map_batches(_load_chunks, fn_kwargs={"spec_json": spec_json, "store": store.url}, batch_size=per,
                        batch_format="numpy")
    cfg = SelectionConfig.from_spec(ctx.spec)
    kept_ds, stats = select_ray(ds, cfg, blocks=blocks, drop_counts=drops)
    kept_ds = kept_ds.map_batches(lambda b: b | {"chunk": np.asarray(b["index"], dtype=np.int64) // rows},
                                  batch_format="numpy")
    # as many shuffle partitions as the dedup's group-bys: Ray's default (200) cost 5 s of a 22 s selection on 2
    # cores at 48,000 rows; each group is still one chunk, so what is written does not change
    written = kept_ds.groupby("chunk", num_partitions=cfg.partitions).map_groups(
        _write_chunk_selections, fn_kwargs={"store": store.url, "rows": rows}, batch_format="numpy")
    kept = [0] * n_chunks
    for r in written.iter_rows():  # one small row per chunk
        kept[int(r["chunk"])] = int(r["kept"])
    for k in range(n_chunks):
        if kept[k] == 0:
            write_chunk_selection(store, k, np.zeros(0, np.int64), np.array([], dtype=str), np.zeros(0, np.float32))
    ctx.executor.call(_merge_selection, store.url, n_chunks, json.dumps(stats))
    return {"kept": kept, "stats": stats}


def _merge_selection(url: str, n_chunks: int, stats: str) -> None:
    """`stages/selection.npz` ({keep, matched, nearest, stats}: the whole job's selection in one
    file, for analyses), assembled on a worker from the per-chunk files."""
    store = Store(url)
    parts = [store.load_npz(selection_chunk_name(k)) for k in range(n_chunks)]
    cat = {key: np.concatenate([p[key] for p in parts]) for key in ("index", "matched", "nearest")}
    store.save_npz("stages/selection.npz", keep=cat["index"], matched=cat["matched"], nearest=cat["nearest"],
                   stats=np.array(stats))
