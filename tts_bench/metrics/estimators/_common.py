"""What the estimators share: defaults, the cost model, and the answer-class pools as arrays."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional

import numpy as np

DEFAULT_MC_REPLICATES = 1000
DEFAULT_TOL = 1e-12
DEFAULT_EXACT_WORK_CAP = 2e4
METHODS = ("auto", "exact", "mc")

# Cost model (nanoseconds, measured with numpy 2 on one x86 core) used to pick
# the cheaper computation per problem; only the ratios matter.
_NS_EXACT_WORK = 40.0  # per unit of the exact work estimate
_NS_INDEX_LABEL = 25.0  # index sampler: per sampled label (draw, sort, look up)
_NS_INDEX_DRAW = 250.0  # index sampler: per replicate (runs, vote)
_NS_MARGINAL = 250.0  # class-by-class sampler: per hypergeometric variate
# Elements per numpy block for the exact method's arrays (~64 MiB of complex).
_BLOCK_ELEMENTS = 4_000_000
# Sampled labels per Monte Carlo block: small enough to stay in cache.
_MC_BLOCK_LABELS = 1 << 18

IntArray = np.ndarray
FloatArray = np.ndarray


# ---------------------------------------------------------------- pools


@dataclass(frozen=True)
class AnswerPools:
    """The answer-class make-up of P problems' pools, as arrays.

    a: correct-class count per problem (0 when no sample is correct);
    z: abstentions (samples without an answer class); n: pool sizes;
    others: wrong classes' counts, each row sorted descending, 0-padded.
    """

    a: IntArray
    z: IntArray
    n: IntArray
    others: IntArray

    @classmethod
    def from_counts(
        cls,
        class_counts: "list[Mapping[str, int]]",
        correct_class: "list[Optional[str]]",
        n: "list[int] | IntArray",
    ) -> "AnswerPools":
        """Build from per-problem class-count dicts, correct classes and pool sizes."""
        n_arr = np.asarray(n, dtype=np.int64)
        # A table read back from disk may hold NaN where None was written.
        correct_class = [None if _missing(g) else g for g in correct_class]
        wrong = [
            sorted((int(v) for cl, v in cc.items() if cl != good and v > 0), reverse=True)
            for cc, good in zip(class_counts, correct_class)
        ]
        width = max([1] + [len(w) for w in wrong])
        others = np.zeros((len(wrong), width), dtype=np.int64)
        for i, w in enumerate(wrong):
            others[i, : len(w)] = w
        a = np.array(
            [int(cc.get(good, 0)) if good is not None else 0
             for cc, good in zip(class_counts, correct_class)],
            dtype=np.int64,
        )
        z = n_arr - a - others.sum(axis=1)
        if (z < 0).any():
            i = int(np.flatnonzero(z < 0)[0])
            raise ValueError(
                f"class counts add up to {int(n_arr[i] - z[i])} > n={int(n_arr[i])} "
                f"(problem #{i}); n must count every sample, abstentions included"
            )
        return cls(a=a, z=z, n=n_arr, others=others)

    def take(self, idx: IntArray) -> "AnswerPools":
        return AnswerPools(self.a[idx], self.z[idx], self.n[idx], self.others[idx])


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))

