"""ACT's conditional-VAE chunk decoder (Zhao et al. 2023, "Learning Fine-Grained Bimanual
Manipulation with Low-Cost Hardware").

Why a CVAE: human (and scripted) demonstrations are multi-modal and an L1 regression of the
chunk averages the modes. In training a small transformer encoder reads [CLS, the pooled
observation, the action chunk] and outputs the mean and log-variance of a latent style
variable z; the decoder (one learned query per chunk step, cross-attending to the prefix plus
a token made from z) regresses the chunk with an L1 loss; the KL to N(0, I) is weighted by
`kl_weight` (the paper's 10). At inference z is the prior's mean, 0, so sampling is
deterministic; ACT's temporal ensembling (averaging the overlapping chunks' predictions for the
current step with exponential weights) is the policy's `select_action`, outside the head.

Options (`spec.options`): latent_dim (32, the paper's), kl_weight (10), encoder_layers
(spec.layers), ff_mult (4), dropout (0.1, the paper's).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from embodia.cerebellum.heads.base import ActionHead, HeadSpec, masked_mean
from embodia.cerebellum.heads.cross_attention import CrossBlock, key_mask, masked_pool


class ACTHead(ActionHead):
    name = "act"

    def __init__(self, spec: HeadSpec) -> None:
        super().__init__(spec)
        d, h, a = spec.d_model, spec.horizon, spec.action_dim
        self.latent_dim = int(spec.option("latent_dim", 32))
        self.kl_weight = float(spec.option("kl_weight", 10.0))
        ff = int(spec.option("ff_mult", 4)) * d
        dropout = float(spec.option("dropout", 0.1))
        n_enc = int(spec.option("encoder_layers", spec.layers))
        # CVAE encoder q(z | chunk, observation): used in training only
        self.enc_action = nn.Linear(a, d)
        self.enc_obs = nn.Linear(d, d)
        self.enc_cls = nn.Parameter(torch.zeros(1, 1, d))
        self.enc_pos = nn.Parameter(torch.zeros(1, h + 2, d))
        layer = nn.TransformerEncoderLayer(d, spec.n_heads, ff, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_enc, norm=nn.LayerNorm(d), enable_nested_tensor=False)
        self.to_latent = nn.Linear(d, 2 * self.latent_dim)
        # decoder p(chunk | prefix, z)
        self.z_in = nn.Linear(self.latent_dim, d)
        self.queries = nn.Parameter(torch.zeros(1, h, d))
        self.blocks = nn.ModuleList(CrossBlock(d, spec.n_heads, ff, dropout) for _ in range(spec.layers))
        self.out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, a))
        for p in (self.enc_cls, self.enc_pos, self.queries):
            nn.init.normal_(p, std=0.02)

    def posterior(self, prefix: torch.Tensor, prefix_pad: torch.Tensor | None, actions: torch.Tensor,
                  action_pad: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) [B, latent] of q(z | chunk, observation); padded steps are masked out
        of the encoder's attention, as in ACT."""
        b = actions.shape[0]
        tokens = torch.cat([self.enc_cls.expand(b, -1, -1),
                            self.enc_obs(masked_pool(prefix, prefix_pad))[:, None],
                            self.enc_action(actions)], dim=1) + self.enc_pos
        pad = None
        if action_pad is not None:
            pad = torch.cat([torch.zeros(b, 2, dtype=torch.bool, device=actions.device), action_pad.bool()], dim=1)
        mu, logvar = self.to_latent(self.encoder(tokens, src_key_padding_mask=pad)[:, 0]).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, prefix: torch.Tensor, prefix_pad: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
        """The chunk [B, H, D] for latent z [B, latent]: the z token joins the prefix as one
        more memory token."""
        b = prefix.shape[0]
        memory = torch.cat([self.z_in(z)[:, None], prefix], dim=1)
        pad = None
        if prefix_pad is not None:
            pad = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=prefix.device), prefix_pad.bool()], dim=1)
        mask = key_mask(pad)
        x = self.queries.expand(b, -1, -1)
        for blk in self.blocks:
            x = blk(x, blk.memory_kv(memory, mask))
        return self.out(x)

    def compute_loss(self, prefix: torch.Tensor, prefix_pad: torch.Tensor | None, actions: torch.Tensor,
                     action_pad: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, float]]:
        """L1 of the reconstructed chunk (padded steps ignored) + kl_weight * KL(q || N(0, I))
        (summed over latent dimensions, averaged over the batch)."""
        mu, logvar = self.posterior(prefix, prefix_pad, actions, action_pad)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        pred = self.decode(prefix, prefix_pad, z)
        l1 = masked_mean((pred - actions).abs(), action_pad)
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(-1).mean()
        loss = l1 + self.kl_weight * kl
        return loss, {"l1": float(l1.detach()), "kl": float(kl.detach())}

    def fit(self, action_chunks: np.ndarray) -> None:
        """Nothing to fit: the CVAE learns everything by gradient."""

    @torch.no_grad()
    def sample(self, prefix: torch.Tensor, prefix_pad: torch.Tensor | None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """z = 0 (the prior's mean), as ACT does at test time: deterministic, so `generator`
        is unused."""
        z = prefix.new_zeros(prefix.shape[0], self.latent_dim)
        return self.decode(prefix, prefix_pad, z)
