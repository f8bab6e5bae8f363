"""Small synthetic tables for the tests that need data the bundled ones do not have."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: The categories of ``shop_table``'s ``channel`` column, most frequent first.
CHANNELS = ("web", "store", "phone")


def shop_table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A mixed table: a categorical ``channel``, numeric ``basket`` and ``visits``, and a
    binary ``returned`` that depends on both kinds (so the encoder matters)."""
    rng = np.random.default_rng(seed)
    channel = rng.choice(CHANNELS, n, p=[0.6, 0.3, 0.1])
    basket = rng.normal(60, 20, n).round(2)
    visits = rng.integers(1, 12, n)
    score = (channel == "phone") * 1.5 + (basket - 60) / 20 - visits / 12 + rng.normal(0, 0.5, n)
    return pd.DataFrame(
        {
            "channel": channel,
            "basket": basket,
            "visits": visits,
            "returned": (score > 0).astype(int),
        }
    )
