"""Datasets: feeds and labels for training, calibration and the INT8 gate, torch-free.

Two sources, one preprocessing (:class:`edgefusion.preprocess.FeedBuilder`, the runtime's):

- :mod:`.synthetic`: independent samples of the reference scenarios (``build_dataset``);
- recorded logs with a ``/labels`` track: :func:`edgefusion.dataset.build.build_recorded_dataset`
  cuts windows with the runtime's sync, labels them from the spans, splits by recording and
  stores shards (:mod:`.shards`) that :func:`load_split` reads back with their hashes verified.

Importing this package needs neither torch nor the 'mcap' extra (training and calibration
import it); building from logs does (:mod:`.build`, :mod:`.recorded`).

Example:
    >>> from edgefusion.package import load_package
    >>> from edgefusion.scenarios import get_scenario
    >>> len(build_dataset(get_scenario("driving"), load_package("driving").feed_builder(), n=2, seed=0))
    2
"""

from __future__ import annotations

from edgefusion.dataset.shards import (
    FORMAT_VERSION,
    LABEL_ARRAYS,
    MANIFEST,
    SPLITS,
    describe,
    load_split,
    read_manifest,
    thin_labels,
)
from edgefusion.dataset.synthetic import (
    INPUT_ORDER,
    NO_INTENT,
    Dataset,
    build_dataset,
    data_hash,
    input_specs,
    intent_labels,
    make_params,
    stack_feeds,
    vocabulary,
)

__all__ = [
    "FORMAT_VERSION",
    "INPUT_ORDER",
    "LABEL_ARRAYS",
    "MANIFEST",
    "NO_INTENT",
    "SPLITS",
    "Dataset",
    "build_dataset",
    "data_hash",
    "describe",
    "input_specs",
    "intent_labels",
    "load_split",
    "make_params",
    "read_manifest",
    "stack_feeds",
    "thin_labels",
    "vocabulary",
]
