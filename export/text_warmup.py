"""Text warm-up: train a fresh text encoder and the intent head on commands alone, before fusion training.

A package fine-tuned with a new text input (``--init PACKAGE --new-text``) starts with a
random n-gram embedding, while its image and audio encoders are trained. Fitting the whole
model from there spends most of its steps (and nearly all of its compute: the CNN) on
waiting for the text encoder. The warm-up first trains only the text encoder (embedding,
positions, text block) and the intent head on the generator's sentences: a few thousand
steps of a small model, about a minute here. Fusion training then starts from text
features that already separate the intents.

Example (a few steps)::

    warm_text(model, get_scenario("driving"), HashedParams(), steps=5, lr=2e-3, seed=0)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from edgefusion.dataset import NO_INTENT, intent_labels
from edgefusion.errors import ExportError
from edgefusion.preprocess import HashedParams, TextParams, encode_text
from edgefusion.scenarios import Scenario
from export.model import FusionNet

__all__ = ["NO_COMMAND_SHARE", "warm_text"]

NO_COMMAND_SHARE = 0.1  # sentences with no command (intent "none"): the head must read an empty input too


def _sentences(scen: Scenario, params: TextParams | HashedParams, n: int, rng: np.random.Generator) -> tuple[
        torch.Tensor, torch.Tensor, torch.Tensor]:
    labels = intent_labels(scen.intents)
    ids = np.zeros((n, *params.shape), np.int64)
    mask = np.zeros((n, params.max_tokens), np.float32)
    y = np.full(n, labels.index(NO_INTENT), np.int64)
    for k in range(n):
        if rng.random() < NO_COMMAND_SHARE:
            continue
        intent = scen.command_intent(rng)
        tok = encode_text(scen.phrase(intent, rng, hard=bool(rng.random() < 0.3)), params)
        ids[k], mask[k], y[k] = tok.ids, tok.mask, labels.index(intent)
    return torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(y)


def warm_text(model: FusionNet, scen: Scenario, params: TextParams | HashedParams, steps: int, lr: float,
              seed: int, batch: int = 64, progress: bool = True) -> dict[str, float]:
    """Train ``model``'s text encoder and intent head in place on ``scen``'s commands; returns loss and accuracy."""
    if not model.cfg.n_intents:
        raise ExportError("the text warm-up trains the intent head, and the model has none")
    rng = np.random.default_rng([seed, 15])
    n = min(steps * batch, 40_000)
    ids, mask, y = _sentences(scen, params, n, rng)
    parts = [model.embed, model.text_block, model.intent_head]
    params_ = [model.pos, *(p for m in parts for p in m.parameters())]
    opt = torch.optim.AdamW(params_, lr=lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    ce = nn.CrossEntropyLoss()
    for m in parts:
        m.train()
    loss = torch.zeros(())
    with tqdm(total=steps, desc="text warm-up", unit="step", disable=not progress) as bar:
        for _ in range(steps):
            idx = torch.from_numpy(rng.integers(0, n, batch))
            _, tvec = model.encode_text(ids[idx], mask[idx])
            loss = ce(model.intent_head(tvec), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
    model.eval()
    with torch.inference_mode():
        held = _sentences(scen, params, 2000, np.random.default_rng([seed, 16]))
        acc = float((model.intent_head(model.encode_text(held[0], held[1])[1]).argmax(1) == held[2]).float().mean())
    return {"steps": steps, "final_loss": float(loss.item()), "held_out_intent_accuracy": round(acc, 4)}
