"""One fusion step: preprocess -> backend -> postprocess, timed per stage.

Live runs and replays drive this same step (DESIGN.md contract 8); only the clock and
the sources differ. Post-processing here is per-step (argmax action, thresholded
events); temporal smoothing (hysteresis, minimum duration) sits on top of it.

Example:
    >>> from edgefusion.package import load_package
    >>> from edgefusion.backends import open_backend
    >>> from edgefusion.samples import FusionWindow
    >>> pkg = load_package("smart_home")
    >>> with open_backend("null", pkg) as be:
    ...     r = FusionStep(pkg, be)(FusionWindow(t_ns=0, image=None, audio=None, command=None))
    >>> r.seq, r.missing
    (0, ('image', 'audio', 'text'))
"""

from __future__ import annotations

import time

import numpy as np

from edgefusion.backends import Backend
from edgefusion.metrics import sigmoid
from edgefusion.package import ModelPackage
from edgefusion.samples import FusionWindow, Result

__all__ = ["FusionStep"]


class FusionStep:
    """Callable turning a :class:`FusionWindow` into a :class:`Result`."""

    def __init__(self, package: ModelPackage, backend: Backend) -> None:
        self.package = package
        self.backend = backend
        self.builder = package.feed_builder()
        self.action_out = package.output("class_logits")
        self.event_out = package.output("multilabel_logits")
        self.seq = 0

    def __call__(self, window: FusionWindow) -> Result:
        t0 = time.perf_counter_ns()
        feeds = self.preprocess(window)
        t1 = time.perf_counter_ns()
        outs = self.backend.infer(feeds)
        t2 = time.perf_counter_ns()
        result = self.postprocess(window, outs)
        t3 = time.perf_counter_ns()
        result.timings_ns.update(preprocess=t1 - t0, inference=t2 - t1, postprocess=t3 - t2, total=t3 - t0)
        return result

    def preprocess(self, window: FusionWindow) -> dict[str, np.ndarray]:
        """The model feeds (batch of 1) for a window."""
        return self.builder.build([window])[0]

    def postprocess(self, window: FusionWindow, outs: dict[str, np.ndarray]) -> Result:
        """Per-step decision: argmax action, thresholded events; assigns the next sequence number."""
        logits = outs[self.action_out.name][0].astype(np.float64)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        k = int(np.argmax(probs))
        ev = sigmoid(outs[self.event_out.name][0].astype(np.float64))
        labels = self.event_out.labels
        scores = {name: float(p) for name, p in zip(labels, ev)}
        events = tuple(n for n in labels if scores[n] >= self.event_out.threshold)
        action = self.action_out.labels[k]
        result = Result(t_ns=window.t_ns, seq=self.seq, action=action, action_score=float(probs[k]), scores=scores,
                        events=events, missing=window.missing, raw_action=action, command=window.command,
                        model=self.package.name,
                        action_scores={a: float(p) for a, p in zip(self.action_out.labels, probs)})
        self.seq += 1
        return result
