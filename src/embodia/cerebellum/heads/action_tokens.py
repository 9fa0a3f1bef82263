"""Discrete action tokens decoded autoregressively (RT-2 / OpenVLA; pi0-FAST).

A small causal transformer decoder cross-attends to the prefix and predicts the chunk's tokens
one at a time: teacher forcing (one forward pass, cross-entropy) in training, greedy decoding
with a key/value cache at inference (the prefix's cross-attention keys/values once per chunk).
Two tokenizers (`spec.options["tokenizer"]`):

- "bins" (default): each normalized value (the quantile normalizer's [-1, 1]) in one of `bins`
  uniform bins (256, as RT-2 and OpenVLA), time-major, exactly H * D tokens; a per-dimension
  embedding tells the decoder which dimension a position holds.
- "fast": the FAST tokenizer (cerebellum/fast_tokenizer.py: DCT, scale and round, BPE;
  Pertsch et al. 2025): far fewer tokens for a smooth chunk, so fewer decoding steps, and each
  token carries more. The sequence ends with EOS; positions after it are padding. The BPE
  vocabulary is fitted in `fit` and lives in buffers of fixed shape (so a state_dict carries
  it). A generated sequence that is undecodable or of the wrong length decodes to a
  zero-padded / truncated coefficient vector, never an exception.
  `fit` writes the fitted state into `spec.options["fast_state"]` (JSON, config.json) too;
  a head built from such a spec starts fitted.

Options: tokenizer ("bins"), bins (256), fast_scale (10, the paper's), fast_vocab (1024, the
paper's), max_tokens (fast: H * D + 1, the longest an encoding plus EOS can be), ff_mult (4),
dropout (0.0), fit_chunks (4096: chunks the BPE is fitted on).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embodia.cerebellum.fast_tokenizer import FastTokenizer
from embodia.cerebellum.heads.base import ActionHead, HeadSpec
from embodia.cerebellum.heads.cross_attention import CrossBlock, key_mask
from embodia.cerebellum.tokenizer import detokenize, tokenize

IGNORE = -100


class ActionTokensHead(ActionHead):
    name = "tokens"

    def __init__(self, spec: HeadSpec) -> None:
        super().__init__(spec)
        d, h, a = spec.d_model, spec.horizon, spec.action_dim
        self.kind = str(spec.option("tokenizer", "bins"))
        if self.kind == "bins":
            self.bins = int(spec.option("bins", 256))
            if self.bins < 2:
                raise ValueError(f"tokens: bins must be >= 2, got {self.bins}")
            self.n_out = self.bins
            self.length = h * a
        elif self.kind == "fast":
            scale, vocab = float(spec.option("fast_scale", 10.0)), int(spec.option("fast_vocab", 1024))
            state = spec.option("fast_state", None)  # what `fit` learned, from config.json
            self.fast = FastTokenizer.from_dict(state) if state else FastTokenizer(h, a, scale, vocab)
            if (self.fast.horizon, self.fast.action_dim, self.fast.vocab_size) != (h, a, vocab):
                raise ValueError("tokens: options.fast_state does not match the spec's horizon, "
                                 "action_dim or fast_vocab")
            self.eos = vocab
            self.n_out = vocab + 1
            self.length = int(spec.option("max_tokens", h * a + 1))
            if self.length < 2:
                raise ValueError(f"tokens: max_tokens must be >= 2, got {self.length}")
            # the fitted tokenizer: [low, high, n_merges] and the merges (-1 past n_merges)
            self.register_buffer("fast_range", torch.zeros(3, dtype=torch.long))
            self.register_buffer("fast_merges", torch.full((vocab, 2), -1, dtype=torch.long))
            self._store_tokenizer()
            self.register_load_state_dict_post_hook(_after_load)
        else:
            raise ValueError(f"tokens: tokenizer must be 'bins' or 'fast', got {self.kind!r}")
        self.bos, self.pad_token = self.n_out, self.n_out + 1  # input-only tokens
        ff = int(spec.option("ff_mult", 4)) * d
        dropout = float(spec.option("dropout", 0.0))
        self.embed = nn.Embedding(self.n_out + 2, d)
        self.pos = nn.Parameter(torch.zeros(self.length, d))
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.pos, std=0.02)
        if self.kind == "bins":
            self.dim_embed = nn.Parameter(torch.zeros(a, d))
            nn.init.normal_(self.dim_embed, std=0.02)
            self.register_buffer("dim_index", torch.arange(self.length) % a, persistent=False)
        self.blocks = nn.ModuleList(CrossBlock(d, spec.n_heads, ff, dropout, causal=True)
                                    for _ in range(spec.layers))
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, self.n_out)

    # --- the tokenizer ------------------------------------------------------------------------

    def fit(self, action_chunks: np.ndarray) -> None:
        """fast: learn the integer range and the BPE merges from the training chunks (into the
        buffers); bins: nothing (the bins are fixed)."""
        if self.kind != "fast":
            return
        chunks = np.asarray(action_chunks, dtype=np.float64)
        self.fast.fit(chunks, max_chunks=int(self.spec.option("fit_chunks", 4096)))
        self.spec.options["fast_state"] = self.fast.to_dict()
        self._store_tokenizer()

    def _store_tokenizer(self) -> None:
        """The Python tokenizer's state -> the buffers (which a state_dict carries)."""
        merges = torch.as_tensor(np.asarray(self.fast.merges, dtype=np.int64).reshape(-1, 2))
        self.fast_range.copy_(torch.tensor([self.fast.low, self.fast.high, len(merges)]))
        self.fast_merges.fill_(-1)
        self.fast_merges[: len(merges)] = merges

    def _sync_tokenizer(self) -> None:
        """Rebuild the Python tokenizer from the buffers (after load_state_dict)."""
        low, high, n = (int(v) for v in self.fast_range.tolist())
        self.fast = FastTokenizer(self.spec.horizon, self.spec.action_dim, self.fast.scale,
                                  self.fast.vocab_size, low, high, self.fast_merges[:n].tolist())

    def encode(self, actions: torch.Tensor, action_pad: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized chunks [B, H, D] -> (targets [B, L] long, keep [B, L] bool)."""
        b, h, a = actions.shape
        if (h, a) != (self.spec.horizon, self.spec.action_dim):
            raise ValueError(f"tokens: actions must be [B, {self.spec.horizon}, {self.spec.action_dim}], "
                             f"got {tuple(actions.shape)}")
        if self.kind == "bins":
            keep = torch.ones(b, h, dtype=torch.bool, device=actions.device)
            if action_pad is not None:
                keep = ~action_pad.bool()
                actions = actions.masked_fill(~keep[..., None], 0.0)
            return tokenize(actions, self.bins).flatten(1), keep.repeat_interleave(a, dim=1)
        # fast: the DCT mixes the whole chunk, so padded steps hold the last real action
        # (what a smooth chunk continues as) instead of being masked out
        x = actions.detach().float().cpu()
        if action_pad is not None:
            pad = action_pad.bool().cpu()
            idx = torch.arange(h).expand(b, h).masked_fill(pad, 0).cummax(1).values
            x = x.gather(1, idx[..., None].expand(b, h, a))
        seqs = self.fast.encode(x.numpy())
        targets = torch.full((b, self.length), IGNORE, dtype=torch.long)
        for i, s in enumerate(seqs):
            s = torch.as_tensor(s[: self.length - 1], dtype=torch.long)
            targets[i, : len(s)] = s
            targets[i, len(s)] = self.eos
        targets = targets.to(actions.device)
        return targets.clamp(min=0), targets != IGNORE

    def decode(self, tokens: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Generated tokens [B, L] -> normalized chunks [B, H, D]."""
        b = tokens.shape[0]
        if self.kind == "bins":
            return detokenize(tokens, self.bins, dtype=dtype).view(b, self.spec.horizon, self.spec.action_dim)
        seqs = []
        for row in tokens.cpu().tolist():
            seqs.append(row[: row.index(self.eos)] if self.eos in row else row)
        return torch.from_numpy(self.fast.decode(seqs)).to(device=tokens.device, dtype=dtype)

    # --- the decoder --------------------------------------------------------------------------

    def _positions(self) -> torch.Tensor:
        if self.kind == "bins":
            return self.pos + self.dim_embed[self.dim_index]
        return self.pos

    def logits(self, prefix: torch.Tensor, prefix_pad: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: target tokens [B, L] (PAD allowed) -> logits [B, L, n_out], where
        logits[:, i] depend only on the prefix and tokens[:, :i]."""
        b = tokens.shape[0]
        bos = torch.full((b, 1), self.bos, dtype=torch.long, device=tokens.device)
        x = self.embed(torch.cat([bos, tokens[:, :-1]], dim=1)) + self._positions()
        mask = key_mask(prefix_pad)
        for blk in self.blocks:
            x = blk(x, blk.memory_kv(prefix, mask))
        return self.out(self.norm(x))

    def compute_loss(self, prefix: torch.Tensor, prefix_pad: torch.Tensor | None, actions: torch.Tensor,
                     action_pad: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, float]]:
        """Cross-entropy over the chunk's tokens (padded steps' tokens and, for fast, the
        positions after EOS ignored; they are also fed as PAD so that nothing leaks)."""
        targets, keep = self.encode(actions, action_pad)
        logits = self.logits(prefix, prefix_pad, targets.masked_fill(~keep, self.pad_token))
        n = keep.sum().clamp(min=1)
        loss = F.cross_entropy(logits.reshape(-1, self.n_out), targets.masked_fill(~keep, IGNORE).reshape(-1),
                               ignore_index=IGNORE, reduction="sum") / n
        with torch.no_grad():
            acc = ((logits.argmax(-1) == targets) & keep).sum() / n
        logs = {"token_ce": float(loss.detach()), "token_acc": float(acc)}
        if self.kind == "fast":
            logs["fast_tokens"] = float(keep.sum()) / len(targets)
        return loss, logs

    def generate(self, prefix: torch.Tensor, prefix_pad: torch.Tensor | None) -> torch.Tensor:
        """Greedy decoding with a key/value cache -> tokens [B, L] (fast: stops once every row
        has produced EOS; the rest is EOS)."""
        b, dh = prefix.shape[0], self.spec.d_model // self.spec.n_heads
        mask = key_mask(prefix_pad)
        mem = [blk.memory_kv(prefix, mask) for blk in self.blocks]
        caches = [(prefix.new_empty(b, self.spec.n_heads, self.length, dh),
                   prefix.new_empty(b, self.spec.n_heads, self.length, dh)) for _ in self.blocks]
        pos = self._positions().to(prefix.dtype)
        fill = self.eos if self.kind == "fast" else 0
        out = torch.full((b, self.length), fill, dtype=torch.long, device=prefix.device)
        tok = torch.full((b,), self.bos, dtype=torch.long, device=prefix.device)
        done = torch.zeros(b, dtype=torch.bool, device=prefix.device)
        for i in range(self.length):
            x = (self.embed(tok) + pos[i])[:, None]
            for blk, m, c in zip(self.blocks, mem, caches, strict=True):
                x = blk(x, m, c, i)
            tok = self.out(self.norm(x[:, 0])).argmax(-1)
            if self.kind == "fast":
                tok = tok.masked_fill(done, self.eos)
                done = done | (tok == self.eos)
            out[:, i] = tok
            if self.kind == "fast" and bool(done.all()):
                break
        return out

    @torch.no_grad()
    def sample(self, prefix: torch.Tensor, prefix_pad: torch.Tensor | None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Greedy chunk [B, H, D]; deterministic, so `generator` is unused."""
        with torch.inference_mode():
            tokens = self.generate(prefix, prefix_pad)
        return self.decode(tokens.clone(), prefix.dtype)


def _after_load(module: nn.Module, incompatible_keys: object) -> None:
    """load_state_dict hook: the fitted FAST state arrived in the buffers."""
    module._sync_tokenizer()
