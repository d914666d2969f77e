"""The reference fusion models (PyTorch).

``attention``: a CNN image encoder (3x3 grid of tokens), a GRU audio encoder over
log-mel frames (2 tokens), a text encoder (one self-attention block over word tokens),
and a transformer that fuses all tokens with self-attention. Modality embeddings tell
the tokens apart; a key-padding mask removes missing modalities and text padding; a
learned summary token is never masked, so no attention row is ever fully masked.

``concat``: the classic late-fusion baseline - one vector per modality (zeroed when the
modality is missing), concatenated into a dense head.

Attention is written with plain matmul/softmax and a finite mask bias (-1e4, not -inf) so
that the ONNX graph stays simple and quantizes cleanly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["FusionNet", "ModelConfig", "count_parameters"]

MASK_BIAS = -1.0e4


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "attention"
    image_size: int = 96
    n_mels: int = 40
    n_frames: int = 49
    max_tokens: int = 12
    vocab_size: int = 128
    n_events: int = 7
    n_actions: int = 8
    d_model: int = 128
    heads: int = 4
    fusion_layers: int = 3
    channels: tuple[int, ...] = (32, 64, 64, 128, 128)

    def to_dict(self) -> dict:
        return asdict(self)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Block(nn.Module):
    """Pre-norm transformer block with an additive key bias (0 keep, MASK_BIAS drop)."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-1, -2)) * (d // h) ** -0.5 + key_bias[:, None, None, :]
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d)
        x = x + self.proj(y)
        return x + self.ff(self.norm2(x))


class FusionNet(nn.Module):
    """Inputs: image (B,3,S,S), audio (B,T,M), tokens (B,L) int64, token_mask (B,L), present (B,3)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        c = cfg.channels
        self.image_enc = nn.Sequential(
            _conv(3, c[0], 2), _conv(c[0], c[1], 2), _conv(c[1], c[2], 1), _conv(c[2], c[3], 2), _conv(c[3], c[4], 1),
            _conv(c[4], d, 2), nn.AdaptiveAvgPool2d(3),
        )
        self.audio_front = nn.Sequential(nn.Conv1d(cfg.n_mels, 64, 3, 2, 1), nn.GELU())
        self.gru = nn.GRU(64, d, batch_first=True)
        self.embed = nn.Embedding(cfg.vocab_size, d, padding_idx=0)
        self.pos = nn.Parameter(torch.zeros(1, cfg.max_tokens, d))
        self.text_block = Block(d, cfg.heads)
        if cfg.arch == "attention":
            self.summary = nn.Parameter(torch.zeros(1, 1, d))
            self.modality = nn.Parameter(torch.zeros(3, d))
            self.fusion = nn.ModuleList(Block(d, cfg.heads) for _ in range(cfg.fusion_layers))
            self.norm = nn.LayerNorm(d)
            head_in = d
        elif cfg.arch == "concat":
            head_in = 3 * d
            self.mix = nn.Sequential(nn.Linear(head_in, 2 * d), nn.GELU(), nn.Linear(2 * d, d), nn.GELU())
            head_in = d
        else:
            raise ValueError(f"unknown arch {cfg.arch!r}; expected 'attention' or 'concat'")
        self.event_head = nn.Linear(head_in, cfg.n_events)
        self.action_head = nn.Linear(head_in, cfg.n_actions)
        nn.init.normal_(self.pos, std=0.02)
        if cfg.arch == "attention":
            nn.init.normal_(self.summary, std=0.02)
            nn.init.normal_(self.modality, std=0.02)

    def forward(self, image: torch.Tensor, audio: torch.Tensor, tokens: torch.Tensor, token_mask: torch.Tensor,
                present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = image.shape[0]
        img = self.image_enc(image).flatten(2).transpose(1, 2)  # (B, 9, d)
        seq, h = self.gru(self.audio_front(audio.transpose(1, 2)).transpose(1, 2))
        aud = torch.stack([h[0], seq.amax(1)], 1)  # (B, 2, d)
        txt_keep = token_mask * present[:, 2:3]
        txt = self.text_block(self.embed(tokens) + self.pos, (1.0 - txt_keep) * MASK_BIAS)
        if self.cfg.arch == "concat":
            tvec = (txt * txt_keep[..., None]).sum(1) / txt_keep.sum(1, keepdim=True).clamp(min=1.0)
            feats = torch.cat([img.mean(1) * present[:, 0:1], aud.mean(1) * present[:, 1:2], tvec], 1)
            z = self.mix(feats)
        else:
            keep = torch.cat([
                torch.ones_like(present[:, :1]),
                present[:, 0:1].expand(b, img.shape[1]),
                present[:, 1:2].expand(b, aud.shape[1]),
                txt_keep,
            ], 1)
            x = torch.cat([
                self.summary.expand(b, -1, -1),
                img + self.modality[0],
                aud + self.modality[1],
                txt + self.modality[2],
            ], 1)
            bias = (1.0 - keep) * MASK_BIAS
            for blk in self.fusion:
                x = blk(x, bias)
            z = self.norm(x[:, 0])
        return self.event_head(z), self.action_head(z)
