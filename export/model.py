"""The reference fusion models (PyTorch).

``attention``: a CNN image encoder (3x3 grid of tokens), a GRU audio encoder over
log-mel frames (2 tokens), a text encoder (one self-attention block over word tokens),
and a transformer that fuses all tokens with self-attention. Modality embeddings tell
the tokens apart; a key-padding mask removes missing modalities and text padding; a
learned summary token is never masked, so no attention row is ever fully masked.

The text encoder reads either word ids of a closed vocabulary (``text = "tokens"``, v1
packages) or, for an open vocabulary, hashed character n-grams per word (``text =
"hashed_ngrams"``, see :mod:`edgefusion.preprocess.text`): a word's vector is the mean of its
n-gram embeddings (Embedding + masked mean, plain Gather/ReduceSum in ONNX). With
``n_intents`` > 0 an intent head reads the pooled text tokens alone and the model returns
a third output, the command's intent logits (the task's intents, ``unrelated``, ``none``).

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
    #: "tokens" (word ids, vocab_size words) or "hashed_ngrams" (vocab_size buckets, max_ngrams per word)
    text: str = "tokens"
    max_ngrams: int = 0
    n_intents: int = 0

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
    """Inputs: image (B,3,S,S), audio (B,T,M), tokens (B,L) or (B,L,G) int64, token_mask (B,L), present (B,3).

    Outputs: event logits, action logits, and with ``n_intents`` intent logits.
    """

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
        if cfg.text not in ("tokens", "hashed_ngrams"):
            raise ValueError(f"unknown text input {cfg.text!r}; expected 'tokens' or 'hashed_ngrams'")
        if cfg.n_intents:
            self.intent_head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU(), nn.Linear(d, cfg.n_intents))
        nn.init.normal_(self.pos, std=0.02)
        if cfg.arch == "attention":
            nn.init.normal_(self.summary, std=0.02)
            nn.init.normal_(self.modality, std=0.02)

    def embed_words(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L, d) word vectors: an embedding per id, or the mean over a word's hashed n-grams."""
        if self.cfg.text == "tokens":
            return self.embed(tokens)
        grams = (tokens > 0).unsqueeze(-1).to(self.pos.dtype)
        return self.embed(tokens).sum(2) / grams.sum(2).clamp(min=1.0)  # padding_idx 0 embeds to zeros

    def encode_text(self, tokens: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Word tokens (B, L, d) after the text block, and their mean over ``keep`` (B, d)."""
        txt = self.text_block(self.embed_words(tokens) + self.pos, (1.0 - keep) * MASK_BIAS)
        return txt, (txt * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp(min=1.0)

    def forward(self, image: torch.Tensor, audio: torch.Tensor, tokens: torch.Tensor, token_mask: torch.Tensor,
                present: torch.Tensor) -> tuple[torch.Tensor, ...]:
        b = image.shape[0]
        img = self.image_enc(image).flatten(2).transpose(1, 2)  # (B, 9, d)
        seq, h = self.gru(self.audio_front(audio.transpose(1, 2)).transpose(1, 2))
        aud = torch.stack([h[0], seq.amax(1)], 1)  # (B, 2, d)
        txt_keep = token_mask * present[:, 2:3]
        txt, tvec = self.encode_text(tokens, txt_keep)
        if self.cfg.arch == "concat":
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
        if self.cfg.n_intents:
            return self.event_head(z), self.action_head(z), self.intent_head(tvec)
        return self.event_head(z), self.action_head(z)
