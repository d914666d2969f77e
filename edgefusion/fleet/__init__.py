"""Fleet-scale evaluation (``edgefusion eval``): every recording, one or two packages, one report.

The pieces, in the order an evaluation uses them:

- :mod:`~edgefusion.fleet.recordings`: which ``.mcap`` logs (the seam for object stores);
- :mod:`~edgefusion.fleet.ship`: packages travel to the workers as bytes, once;
- :mod:`~edgefusion.fleet.worker`: one task = one recording replayed through one package and
  scored, ``replay --check``'s report included (:mod:`~edgefusion.fleet.labels` per label);
- :mod:`~edgefusion.fleet.runners`: local processes or Ray (the ``fleet`` extra, imported only
  when asked for), the same tasks either way;
- :mod:`~edgefusion.fleet.cache`: scored tasks kept in ``--out``, so a rerun resumes;
- :mod:`~edgefusion.fleet.summary`, :mod:`~edgefusion.fleet.rules`, :mod:`~edgefusion.fleet.report`,
  :mod:`~edgefusion.fleet.plots`: pooling, A against B, the verdict, the report;
- :mod:`~edgefusion.fleet.evaluate`: :func:`evaluate` ties them together.

Example::

    from edgefusion.fleet import EvalConfig, evaluate, parse_rule

    outcome = evaluate(EvalConfig("smart_home", ["logs/"], variants=("fp32", "int8"), ray="auto",
                                  rules=[parse_rule("delta.recall < -0.02")]))
    print(outcome.report["verdict_line"], outcome.exit_code)
"""

from edgefusion.fleet.evaluate import (
    AUTO,
    EXIT_CODES,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_REGRESSION,
    EvalConfig,
    EvalOutcome,
    evaluate,
)
from edgefusion.fleet.rules import Rule, load_rules, parse_rule
from edgefusion.fleet.worker import Job, run_job, score_recording

__all__ = [
    "AUTO",
    "EXIT_CODES",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_REGRESSION",
    "EvalConfig",
    "EvalOutcome",
    "Job",
    "Rule",
    "evaluate",
    "load_rules",
    "parse_rule",
    "run_job",
    "score_recording",
]
