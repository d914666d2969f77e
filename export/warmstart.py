"""Warm starts: a new model takes every tensor of a trained one that still fits, and says which did not.

Fine-tuning (``edgefusion train --init PACKAGE``) may change the model around the trained
encoders: a new text input (hashed n-grams instead of a closed vocabulary), new action
labels, a new intent head. :func:`load_matching` copies each tensor whose name and shape
match; the heads' rows are matched by label, so a new action gets a fresh row while the
others keep theirs; everything else keeps its fresh initialisation and is listed.

Example:
    >>> import torch
    >>> old, new = torch.nn.Linear(2, 2), torch.nn.Linear(2, 3)
    >>> notes = load_matching(new, old.state_dict(), {"": (("a", "b"), ("a", "c", "b"))})
    >>> notes
    ['rows c (new labels) of weight, bias']
    >>> bool(torch.equal(new.weight[2], old.weight[1]))
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

__all__ = ["HEADS", "grows", "load_matching"]

#: the reference model's heads whose rows are labels: head prefix -> the linear layer inside it
HEADS = {"event_head": "event_head", "action_head": "action_head", "intent_head": "intent_head.3"}


def grows(new: Sequence[str], old: Sequence[str]) -> bool:
    """Whether ``new`` holds all of ``old``, in the same order (labels added, none dropped or moved).

    Example:
        >>> grows(("a", "x", "b"), ("a", "b")), grows(("b", "a"), ("a", "b"))
        (True, False)
    """
    it = iter(new)
    return all(label in it for label in old)


def load_matching(model: nn.Module, old: Mapping[str, torch.Tensor],
                  heads: Mapping[str, tuple[Sequence[str], Sequence[str]]]) -> list[str]:
    """Copy ``old``'s tensors into ``model`` where they fit; returns what was (partly) re-initialised.

    ``heads`` maps a linear layer's prefix (``""`` for the model itself) to its (old, new)
    labels: rows are copied label by label.
    """
    state = model.state_dict()
    notes: list[str] = []
    fresh: list[str] = []
    done: set[str] = set()
    for prefix, (old_labels, new_labels) in heads.items():
        keys = [f"{prefix}.{p}" if prefix else p for p in ("weight", "bias")]
        if not all(k in state for k in keys):
            continue
        done.update(keys)
        if not all(k in old and old[k].shape[1:] == state[k].shape[1:] for k in keys):
            fresh.extend(f"{k} ({'new' if k not in old else 'another width'})" for k in keys)
            continue
        with torch.no_grad():
            for k in keys:
                for i, label in enumerate(new_labels):
                    if label in old_labels:
                        state[k][i] = old[k][list(old_labels).index(label)]
        added = [x for x in new_labels if x not in old_labels]
        if added:
            notes.append(f"rows {', '.join(added)} (new labels) of {', '.join(k.split('.')[-1] for k in keys)}"
                         if not prefix else f"rows {', '.join(added)} (new labels) of {prefix}")
    for k, v in state.items():
        if k in done:
            continue
        if k in old and old[k].shape == v.shape:
            v.copy_(old[k])
        else:
            was = f"{tuple(old[k].shape)} -> {tuple(v.shape)}" if k in old else "new"
            fresh.append(f"{k} ({was})")
    model.load_state_dict(state)
    return fresh + notes
