"""Encode-process-decode for CLRS (Ibarz et al. 2022, "A Generalist Neural Algorithmic Learner").

- Encoders: one linear map per feature, by location and type, summed into node `[B, N, H]`, edge
  `[B, N, N, H]` and graph `[B, H]` features. Node pointers are edge features (the one-hot `i → π(i)`),
  edge pointers are averaged over each end, graph pointers are node features.
- Processors (one message-passing step per hint step, max aggregation, layer norm):
  `mpnn` on the complete graph; `pgn` on the input graph's edges (edge masks and pointers of the inputs,
  hint pointers, self-loops); `triplet_gmpnn`: the complete graph with an update gate and triplet messages
  `max_i ψ(h_i, h_j, h_k, e_ij, e_ik, e_kj, g)` that become the edge latents the decoders read.
- Decoders per type: pointers as a softmax over nodes, masks as sigmoids, mask_one and categorical as
  softmaxes, scalars by MSE; permutation outputs through a Sinkhorn operator (or a plain pointer).
- Hints: each step predicts the next step's hints (supervised); the next step reads the true hints with
  probability `teacher_forcing` and otherwise the model's own (soft, detached) predictions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from consumers.clrs.data import POINTER_TYPES, Batch, Spec

BIG = 1e9
PROCESSORS = ("mpnn", "pgn", "triplet_gmpnn")


@dataclass
class ModelConfig:
    processor: str = "triplet_gmpnn"
    hidden: int = 128
    triplet_dim: int = 8
    edge_pointer_dim: int = 32  # width of the [B, N, N, N, d] edge-pointer decoder
    teacher_forcing: float = 0.0
    permutation: str = "sinkhorn"  # or "pointer"
    sinkhorn_steps: int = 10
    sinkhorn_temperature: float = 0.1
    hint_loss_weight: float = 1.0


# ---------------------------------------------------------------- features in dense form


def dense(x: Tensor, loc: str, typ: str, n: int) -> Tensor:
    """A feature as the encoder reads it: `[..., d]` with d = 1 (scalar, masks), C (categorical);
    pointers become one-hot over the `n` nodes (node: `[B, N, N]`, edge: `[B, N, N, N]`, graph: `[B, N]`)."""
    if typ in POINTER_TYPES:
        return F.one_hot(x.long(), n).float() if x.dtype in (torch.long, torch.int64, torch.int32) else x
    if typ == "categorical":
        return x
    return x.unsqueeze(-1)


def _node_dims(loc: str) -> int:
    return {"node": 1, "edge": 2, "graph": 0}[loc]


def valid_mask(loc: str, node_mask: Tensor) -> Tensor:
    """Where a feature at `loc` is real: `[B, N]`, `[B, N, N]` or `[B]`."""
    if loc == "node":
        return node_mask
    if loc == "edge":
        return node_mask[:, :, None] & node_mask[:, None, :]
    return torch.ones(node_mask.shape[0], dtype=torch.bool, device=node_mask.device)


def encoder_columns(x: Tensor, loc: str, typ: str, n_valid: Tensor) -> tuple[str, Tensor]:
    """Where a feature's encoding goes and its input columns there. Node pointers are edge columns
    (the one-hot edge i -> pi(i)); edge pointers two edge columns (averaged over each end); graph
    pointers a node column. One linear map per location over the concatenated columns is the sum of
    one linear map per feature."""
    if typ in POINTER_TYPES:
        if loc == "node":
            return "edge", x.unsqueeze(-1)
        if loc == "edge":
            denom = n_valid.view(-1, 1, 1, 1).float()
            return "edge", torch.cat([x.sum(1).unsqueeze(-1) / denom, x.sum(2).unsqueeze(-1) / denom], -1)
        return "node", x.unsqueeze(-1)
    return loc, x


def encoder_width(loc: str, typ: str, dim_in: int) -> tuple[str, int]:
    if typ in POINTER_TYPES:
        return ("node", 1) if loc == "graph" else ("edge", 2 if loc == "edge" else 1)
    return loc, dim_in


# ---------------------------------------------------------------- processors


class Processor(nn.Module):
    """One step of MPNN / PGN / Triplet-GMPNN message passing with max aggregation."""

    def __init__(self, kind: str, hidden: int, triplet_dim: int = 8) -> None:
        super().__init__()
        if kind not in PROCESSORS:
            raise ValueError(f"processor must be one of {PROCESSORS} (got {kind!r})")
        h = hidden
        self.kind = kind
        self.m1, self.m2, self.me, self.mg = nn.Linear(2 * h, h), nn.Linear(2 * h, h), nn.Linear(h, h), nn.Linear(h, h)
        self.msg_mlp = nn.Sequential(nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, h))
        self.o1, self.o2 = nn.Linear(2 * h, h), nn.Linear(h, h)
        self.ln = nn.LayerNorm(h)
        self.gated = self.triplets = kind == "triplet_gmpnn"
        if self.gated:
            self.g1, self.g2, self.g3 = nn.Linear(2 * h, h), nn.Linear(h, h), nn.Linear(h, h)
            nn.init.constant_(self.g3.bias, -3.0)  # start close to "keep the old state"
        if self.triplets:
            t = triplet_dim
            self.t1, self.t2, self.t3 = nn.Linear(2 * h, t), nn.Linear(2 * h, t), nn.Linear(2 * h, t)
            self.te1, self.te2, self.te3, self.tg = nn.Linear(h, t), nn.Linear(h, t), nn.Linear(h, t), nn.Linear(h, t)
            self.o3 = nn.Linear(t, h)

    def forward(self, node: Tensor, edge: Tensor, graph: Tensor, hidden: Tensor, adj: Tensor,
                node_mask: Tensor) -> tuple[Tensor, Tensor | None]:
        """node, hidden `[B, N, H]`; edge `[B, N, N, H]` (sender, receiver); adj `[B, N, N]` bool.
        Returns the new hidden state and, for triplet_gmpnn, new edge latents."""
        z = torch.cat([node, hidden], -1)
        msgs = (self.m1(z)[:, None, :, :] + self.m2(z)[:, :, None, :] + self.me(edge) + self.mg(graph)[:, None, None, :])
        msgs = self.msg_mlp(msgs)
        msgs = msgs.masked_fill(~adj.unsqueeze(-1), -BIG).amax(1)  # over senders
        msgs = torch.where(msgs <= -BIG / 2, torch.zeros_like(msgs), msgs)
        out = self.ln(F.relu(self.o1(z) + self.o2(msgs)))
        if self.gated:
            gate = torch.sigmoid(self.g3(F.relu(self.g1(z) + self.g2(msgs))))
            out = out * gate + hidden * (1 - gate)
        tri = None
        if self.triplets:
            # t_ijk = a_ij + b_ik + c_jk, with a_ij = t1(z_i) + t2(z_j) + te1(e_ij) + tg(g) (padded i: -BIG),
            # b_ik = t3(z_k) + te2(e_ik), c_jk = te3(e_jk); two broadcast adds over [B, i, j, k, t], then max over i
            a = self.t1(z)[:, :, None] + self.t2(z)[:, None, :] + self.te1(edge) + self.tg(graph)[:, None, None]
            a = a.masked_fill(~node_mask[:, :, None, None], -BIG)
            b = self.t3(z)[:, None, :] + self.te2(edge)
            t = (a[:, :, :, None] + b[:, :, None, :]).add_(self.te3(edge)[:, None]).amax(1)  # [B, j, k, t]
            tri = F.relu(self.o3(t))
        return out * node_mask.unsqueeze(-1), tri


# ---------------------------------------------------------------- decoders


class Decoder(nn.Module):
    """Raw predictions (logits, or values for scalars) for one hint or output feature."""

    def __init__(self, loc: str, typ: str, hidden: int, n_cat: int = 1, edge_pointer_dim: int = 32) -> None:
        super().__init__()
        self.loc, self.typ = loc, typ
        h3, h = 3 * hidden, hidden
        out = n_cat if typ == "categorical" else 1
        if loc == "node":
            if typ in POINTER_TYPES:
                self.a, self.b, self.e, self.o = nn.Linear(h3, h), nn.Linear(h3, h), nn.Linear(h, h), nn.Linear(h, 1)
            else:
                self.a = nn.Linear(h3, out)
        elif loc == "edge":
            if typ in POINTER_TYPES:
                d = edge_pointer_dim
                self.e1, self.e2, self.e3, self.nk = nn.Linear(h, d), nn.Linear(h, d), nn.Linear(h, d), nn.Linear(h3, d)
                self.o = nn.Linear(d, 1)
            else:
                self.a, self.b, self.e = nn.Linear(h3, out), nn.Linear(h3, out), nn.Linear(h, out)
        else:
            if typ in POINTER_TYPES:
                self.a, self.g = nn.Linear(h3, 1), nn.Linear(h, 1)
            else:
                self.a, self.g = nn.Linear(h3, out), nn.Linear(h, out)
        if typ in POINTER_TYPES and loc == "node" and typ != "pointer":  # permutation: also which node is first
            self.first = nn.Linear(h3, 1)

    def forward(self, ht: Tensor, edge: Tensor, graph: Tensor, node_mask: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        loc, typ = self.loc, self.typ
        pad = ~node_mask  # [B, N]
        if loc == "node":
            if typ in POINTER_TYPES:  # [B, i, j]: node i points at j
                p = torch.maximum(self.a(ht)[:, :, None, :], self.b(ht)[:, None, :, :] + self.e(edge))
                logits = self.o(p).squeeze(-1).masked_fill(pad[:, None, :], -BIG)
                if hasattr(self, "first"):
                    return logits, self.first(ht).squeeze(-1).masked_fill(pad, -BIG)
                return logits
            y = self.a(ht)
            return y if typ == "categorical" else (y.squeeze(-1).masked_fill(pad, -BIG) if typ == "mask_one" else y.squeeze(-1))
        if loc == "edge":
            if typ in POINTER_TYPES:  # [B, i, j, k]: edge (i, j) points at node k
                # score(i, j, k) = w . relu(e1_ik + e2_kj + e3_ij + n_k): k splits the edge i -> j
                ik = self.e1(edge) + self.nk(ht)[:, None]  # [B, i, k, d]
                jk = self.e2(edge).transpose(1, 2)  # e_kj at [B, j, k, d]
                s = F.relu((ik[:, :, None] + jk[:, None]).add_(self.e3(edge)[:, :, :, None]))
                return self.o(s).squeeze(-1).masked_fill(pad[:, None, None, :], -BIG)
            y = self.a(ht)[:, :, None] + self.b(ht)[:, None, :] + self.e(edge)
            return y if typ == "categorical" else y.squeeze(-1)
        if typ in POINTER_TYPES:  # graph pointer: a node
            return (self.a(ht).squeeze(-1) + self.g(graph)).masked_fill(pad, -BIG)
        gr = ht.masked_fill(pad.unsqueeze(-1), -BIG).amax(1)
        y = self.a(gr) + self.g(graph)
        return y if typ == "categorical" else y.squeeze(-1)


def log_sinkhorn(logits: Tensor, node_mask: Tensor, steps: int, temperature: float) -> Tensor:
    """Log of a (near) doubly stochastic matrix from pointer logits `[B, N, N]`, padded rows/columns excluded."""
    valid = node_mask[:, :, None] & node_mask[:, None, :]
    x = (logits / temperature).masked_fill(~valid, -BIG)
    for _ in range(steps):
        x = x - torch.logsumexp(x, dim=2, keepdim=True)
        x = x.masked_fill(~valid, -BIG)
        x = x - torch.logsumexp(x, dim=1, keepdim=True)
        x = x.masked_fill(~valid, -BIG)
    return x


def permutation_target(pred: Tensor, node_mask: Tensor) -> tuple[Tensor, Tensor]:
    """A sorted-order predecessor array (the first element points at itself) as a true permutation:
    the first element points at the last one instead. Returns (permutation, index of the first)."""
    b = torch.arange(pred.shape[0], device=pred.device)
    ar = torch.arange(pred.shape[1], device=pred.device)
    first = ((pred == ar[None]) & node_mask).float().argmax(1)
    others = node_mask.clone()
    others[b, first] = False
    pointed = torch.zeros_like(pred).scatter_add_(1, pred.masked_fill(~others, 0), others.long())
    last = ((pointed == 0) & node_mask).float().argmax(1)  # nobody's predecessor
    perm = pred.clone()
    perm[b, first] = last
    return perm, first


# ---------------------------------------------------------------- the model


class EPD(nn.Module):
    """Encode-process-decode over one algorithm's spec."""

    def __init__(self, spec: Spec, config: ModelConfig | None = None, categories: dict[str, int] | None = None) -> None:
        super().__init__()
        self.spec, self.cfg = dict(spec), config or ModelConfig()
        cats = categories or {}
        h = self.cfg.hidden
        self.enc_keys: list[str] = []
        widths = {"node": 0, "edge": 0, "graph": 0}
        self.dec = nn.ModuleDict()
        for name, (stage, loc, typ) in self.spec.items():
            if typ == "categorical" and name not in cats:
                raise ValueError(f"categorical feature {name!r} needs its number of categories")
            dim_in = cats.get(name, 1)
            if stage in ("input", "hint"):
                self.enc_keys.append(f"{stage}_{name}")
                where, w = encoder_width(loc, typ, dim_in)
                widths[where] += w
            if stage in ("hint", "output"):
                self.dec[f"{stage}_{name}"] = Decoder(loc, typ, h, dim_in, self.cfg.edge_pointer_dim)
        self.enc = nn.ModuleDict({loc: nn.Linear(w, h) for loc, w in widths.items() if w})
        for lin in self.enc.values():
            nn.init.xavier_uniform_(lin.weight)
        self.processor = Processor(self.cfg.processor, h, self.cfg.triplet_dim)
        self.categories = cats

    # ------------------------------------------------ pieces

    def _encode(self, feats: dict[str, tuple[str, Tensor]], node_mask: Tensor, n_valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, n = node_mask.shape
        h = self.cfg.hidden
        cols: dict[str, list[Tensor]] = {"node": [], "edge": [], "graph": []}
        for key in self.enc_keys:
            x = feats[key]
            _, loc, typ = self.spec[key.split("_", 1)[1]]
            if typ in POINTER_TYPES:  # no pointer from a padded node (nor from a padded edge)
                x = x * valid_mask(loc, node_mask).view(*x.shape[:1 + _node_dims(loc)], *([1] * (x.dim() - 1 - _node_dims(loc))))
            where, c = encoder_columns(x, loc, typ, n_valid)
            cols[where].append(c)
        shapes = {"node": (b, n, h), "edge": (b, n, n, h), "graph": (b, h)}
        out = [self.enc[loc](torch.cat(cols[loc], -1)) if cols[loc] else node_mask.new_zeros(shapes[loc], dtype=torch.float32)
               for loc in ("node", "edge", "graph")]
        return out[0], out[1], out[2]

    def _adjacency(self, dense_feats: dict[str, Tensor], node_mask: Tensor) -> Tensor:
        both = node_mask[:, :, None] & node_mask[:, None, :]
        if self.cfg.processor != "pgn":
            return both
        n = node_mask.shape[1]
        adj = torch.eye(n, dtype=torch.bool, device=node_mask.device)[None].expand_as(both).clone()
        for key, x in dense_feats.items():
            stage, name = key.split("_", 1)
            _, loc, typ = self.spec[name]
            if loc == "node" and typ in POINTER_TYPES:
                hard = F.one_hot(x.argmax(-1), n).bool()
                adj |= hard | hard.transpose(1, 2)
            elif loc == "edge" and typ == "mask" and stage == "input":
                m = x.squeeze(-1) > 0.5
                adj |= m | m.transpose(1, 2)
        return adj & both

    def _soft(self, name: str, raw, node_mask: Tensor) -> Tensor:
        """A hint prediction in the dense form the encoder reads (probabilities), detached."""
        _, loc, typ = self.spec[name]
        raw = raw[0] if isinstance(raw, tuple) else raw
        if typ in POINTER_TYPES:
            out = raw.softmax(-1)
        elif typ == "categorical":
            out = raw.softmax(-1)
        elif typ == "mask":
            out = torch.sigmoid(raw).unsqueeze(-1)
        elif typ == "mask_one":
            flat = raw.reshape(raw.shape[0], -1) if loc != "graph" else raw.reshape(raw.shape[0], 1)
            out = flat.softmax(-1).reshape(raw.shape).unsqueeze(-1) if loc != "graph" else torch.sigmoid(raw).unsqueeze(-1)
        else:
            out = raw.unsqueeze(-1)
        return out.detach()

    # ------------------------------------------------ forward

    def forward(self, batch: Batch) -> tuple[dict[str, Tensor], list[dict[str, Tensor]]]:
        """Run every hint step. Returns (output predictions at each sample's last step, hint predictions
        per step t = 0 .. T-2, each predicting hint t+1). Raw logits / values."""
        node_mask, n_valid = batch.node_mask, batch.n
        n = batch.num_nodes
        steps = max(int(batch.lengths.max()) - 1, 1)
        last_step = (batch.lengths - 2).clamp(min=0)  # the step whose output predictions count
        inputs = {f"input_{k}": dense(v, self.spec[k][1], self.spec[k][2], n) for k, v in batch.inputs.items()}
        hint_keys = [k for k, v in self.spec.items() if v[0] == "hint"]
        cur = {f"hint_{k}": dense(batch.hints[k][:, 0], self.spec[k][1], self.spec[k][2], n) for k in hint_keys}
        hidden = node_mask.new_zeros(batch.size, n, self.cfg.hidden, dtype=torch.float32)
        outputs: dict[str, Tensor] = {}
        hint_preds: list[dict[str, Tensor]] = []
        for t in range(steps):
            feats = inputs | cur
            node, edge, graph = self._encode(feats, node_mask, n_valid)
            adj = self._adjacency(feats, node_mask)
            new_hidden, tri = self.processor(node, edge, graph, hidden, adj, node_mask)
            lat_edge = tri if tri is not None else edge
            ht = torch.cat([node, hidden, new_hidden], -1)
            hidden = new_hidden
            preds = {k: self.dec[f"hint_{k}"](ht, lat_edge, graph, node_mask) for k in hint_keys}
            hint_preds.append(preds)
            done_now = last_step == t
            if bool(done_now.any()):
                for k, (stage, _, _) in self.spec.items():
                    if stage != "output":
                        continue
                    o = self.dec[f"output_{k}"](ht, lat_edge, graph, node_mask)
                    if k not in outputs:
                        outputs[k] = o
                    elif isinstance(o, tuple):
                        outputs[k] = tuple(_where(done_now, a, b) for a, b in zip(o, outputs[k], strict=True))
                    else:
                        outputs[k] = _where(done_now, o, outputs[k])
            if t + 1 < steps:  # the hints the next step reads
                nxt = {}
                for k in hint_keys:
                    truth = dense(batch.hints[k][:, t + 1], self.spec[k][1], self.spec[k][2], n)
                    if self.training and self.cfg.teacher_forcing >= 1.0:
                        nxt[f"hint_{k}"] = truth
                        continue
                    own = self._soft(k, preds[k], node_mask)
                    if self.training and self.cfg.teacher_forcing > 0:
                        pick = torch.rand(batch.size, device=own.device) < self.cfg.teacher_forcing
                        own = _where(pick, truth, own)
                    nxt[f"hint_{k}"] = own
                cur = nxt
        return outputs, hint_preds

    # ------------------------------------------------ losses and decoding

    def loss(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        outputs, hint_preds = self(batch)
        parts: dict[str, float] = {}
        total = 0.0
        for k, (stage, loc, _) in self.spec.items():
            if stage != "output":
                continue
            valid = valid_mask(loc, batch.node_mask)
            lo = self._feature_loss(k, outputs[k], batch.outputs[k], valid, batch.node_mask, output=True)
            parts[f"output/{k}"] = float(lo.detach())
            total = total + lo
        hint_keys = [k for k, v in self.spec.items() if v[0] == "hint"]
        if hint_keys and self.cfg.hint_loss_weight > 0:
            hl = 0.0
            for k in hint_keys:
                _, loc, typ = self.spec[k]
                vm = valid_mask(loc, batch.node_mask)
                acc, cnt = 0.0, 0
                for t, preds in enumerate(hint_preds):
                    active = (t + 1) < batch.lengths  # hint t+1 exists for this sample
                    if not bool(active.any()):
                        continue
                    v = vm & active.view(-1, *([1] * (vm.dim() - 1)))
                    acc = acc + self._feature_loss(k, preds[k], batch.hints[k][:, t + 1], v, batch.node_mask)
                    cnt += 1
                if cnt:
                    parts[f"hint/{k}"] = float(acc.detach()) / cnt
                    hl = hl + acc / cnt
            total = total + self.cfg.hint_loss_weight * hl
        return total, parts

    def _feature_loss(self, name: str, pred, truth: Tensor, valid: Tensor, node_mask: Tensor, output: bool = False) -> Tensor:
        _, loc, typ = self.spec[name]
        vf = valid.float()
        denom = vf.sum().clamp(min=1)
        if typ == "scalar":
            return (((pred - truth) ** 2) * vf).sum() / denom
        if typ == "mask":  # -1 is the benchmark's "masked": no decision, no loss
            vf = vf * (truth >= 0).float()
            bce = F.binary_cross_entropy_with_logits(pred, truth.clamp(min=0), reduction="none")
            return (bce * vf).sum() / vf.sum().clamp(min=1)
        if typ == "mask_one":
            if loc == "graph":
                return (F.binary_cross_entropy_with_logits(pred, truth, reduction="none") * vf).sum() / denom
            b = pred.shape[0]
            lp = pred.masked_fill(~valid, -BIG).reshape(b, -1).log_softmax(-1)
            per = -(lp * truth.reshape(b, -1)).sum(-1)
            vb = valid.reshape(b, -1).any(-1).float()
            return (per * vb).sum() / vb.sum().clamp(min=1)
        if typ == "categorical":  # a masked row ([0, .., -1]) sums to -1: left out
            per = -(pred.log_softmax(-1) * truth.clamp(min=0)).sum(-1)
            vf = vf * (truth.sum(-1) > 0).float()
            return (per * vf).sum() / vf.sum().clamp(min=1)
        # pointers
        if isinstance(pred, tuple):  # permutation output: (logits, first-node logits)
            logits, first_logits = pred
            perm, first = permutation_target(truth, node_mask)
            if self.cfg.permutation == "sinkhorn":
                lp = log_sinkhorn(logits, node_mask, self.cfg.sinkhorn_steps, self.cfg.sinkhorn_temperature)
            else:
                lp = logits.log_softmax(-1)
            per = -lp.gather(-1, perm.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            first_loss = F.cross_entropy(first_logits, first)
            return (per * vf).sum() / denom + first_loss
        lp = pred.log_softmax(-1)
        per = -lp.gather(-1, truth.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return (per * vf).sum() / denom

    @torch.no_grad()
    def predict(self, batch: Batch) -> dict[str, Tensor]:
        """Hard output predictions in the storage form of the data (pointers as indices, masks 0/1, ...)."""
        was = self.training
        self.eval()
        outputs, _ = self(batch)
        self.train(was)
        return {k: self.decode_output(k, v, batch.node_mask) for k, v in outputs.items()}

    def decode_output(self, name: str, raw, node_mask: Tensor) -> Tensor:
        _, loc, typ = self.spec[name]
        if isinstance(raw, tuple):  # permutation
            logits, first_logits = raw
            if self.cfg.permutation == "sinkhorn":
                logits = log_sinkhorn(logits, node_mask, self.cfg.sinkhorn_steps, self.cfg.sinkhorn_temperature)
            ptr = logits.argmax(-1)
            first = first_logits.argmax(-1)
            ptr[torch.arange(ptr.shape[0]), first] = first
            return ptr
        if typ in POINTER_TYPES:
            return raw.argmax(-1)
        if typ == "mask":
            return (raw > 0).float()
        if typ == "categorical":
            return F.one_hot(raw.argmax(-1), raw.shape[-1]).float()
        if typ == "mask_one":
            if loc == "graph":
                return (raw > 0).float()
            b = raw.shape[0]
            idx = raw.reshape(b, -1).argmax(-1)
            return F.one_hot(idx, raw[0].numel()).float().reshape(raw.shape)
        return raw

    def config_dict(self) -> dict:
        return {"spec": {k: list(v) for k, v in self.spec.items()}, "model": asdict(self.cfg), "categories": self.categories}


def _where(cond: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return torch.where(cond.view(-1, *([1] * (a.dim() - 1))), a, b)


def categories_of(spec: Spec, sample: dict) -> dict[str, int]:
    """Number of categories of each categorical feature, read off one trajectory."""
    from consumers.clrs.data import STAGE_KEY

    return {k: int(sample[STAGE_KEY[s]][k].shape[-1]) for k, (s, _, t) in spec.items() if t == "categorical"}


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


