"""Every registered accuracy metric a run produced against k (log2 axis), with 95% CI bands."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..metrics.registry import label, present
from ..store import atomic_write_bytes

_STYLES = ("o-", "s--", "^-.", "D:", "v-", "P--", "X-.")


def plot_curves(curves: pd.DataFrame, path: Path, *, title: str = "") -> Path:
    import io

    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for i, metric in enumerate(present(curves["metric"], figure="accuracy")):
        d = curves[curves["metric"] == metric].sort_values("k")
        ax.plot(d["k"], d["value"], _STYLES[i % len(_STYLES)], label=label(metric))
        ax.fill_between(d["k"], d["ci_low"], d["ci_high"], alpha=0.2)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples per problem)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)
