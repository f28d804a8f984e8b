"""Statistics for experiment summaries, computed from SQL sufficient statistics.

Every function takes plain numbers (counts, means and M2 of rollups) so the
endpoint aggregates runs in SQL and never loops over them in Python. The
distributions and numerics come from scipy; every formula names its source
so the README can cite it. Results are frozen dataclasses whose ``to_json()``
gives JSON-safe dicts (no NaN or infinity: ``None`` instead).

Invalid inputs (negative counts, successes above n, confidence outside (0, 1))
raise :class:`automation_server.errors.Invalid`; "not enough data" is not an
error and gives ``None``.

- :mod:`.moments`: (n, mean, M2) and Chan's merge
- :mod:`.intervals`: Wilson, Student t, Welch
- :mod:`.probability`: P(variant beats control)
- :mod:`.msprt`: always-valid intervals
- :mod:`.srm`: sample-ratio mismatch
- :mod:`.multiple`: Holm's adjustment over many comparisons
- :mod:`.thompson`: bandit allocation (probability of being the best)
"""

from automation_server.experiments.stats.intervals import (
    Diff,
    t_interval,
    welch_diff,
    wilson_interval,
)
from automation_server.experiments.stats.moments import MeanStats
from automation_server.experiments.stats.msprt import (
    DEFAULT_TARGET_N,
    MsprtTuning,
    default_tau2,
    msprt_interval,
    optimal_tau2_ratio,
)
from automation_server.experiments.stats.multiple import holm_adjust
from automation_server.experiments.stats.probability import (
    prob_beats_control_mean,
    prob_beats_control_rate,
)
from automation_server.experiments.stats.srm import SRM_MIN_EXPECTED, SrmResult, srm_check

__all__ = [
    "DEFAULT_TARGET_N",
    "SRM_MIN_EXPECTED",
    "Diff",
    "MeanStats",
    "MsprtTuning",
    "SrmResult",
    "default_tau2",
    "holm_adjust",
    "msprt_interval",
    "optimal_tau2_ratio",
    "prob_beats_control_mean",
    "prob_beats_control_rate",
    "srm_check",
    "t_interval",
    "welch_diff",
    "wilson_interval",
]
