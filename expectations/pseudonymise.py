"""Keyed pseudonymisation of NHS numbers.

HMAC-SHA256 with a secret key (``UPSTREAM_PSEUDO_KEY``): without the key, a pseudonym cannot be
reversed or recomputed by a dictionary attack over the 10-digit NHS number space, which a plain hash
could be. The same key gives the same ``person_id`` across deliveries, so history links up.
"""

from __future__ import annotations

import hashlib
import hmac

import polars as pl

PERSON_ID_LENGTH = 16  # hex characters (64 bits): collision-free in practice at England scale (56M)


def pseudonymise_one(nhs_number: str, key: bytes) -> str:
    return hmac.new(key, nhs_number.encode(), hashlib.sha256).hexdigest()[:PERSON_ID_LENGTH]


def pseudonymise(nhs_numbers: pl.Series, key: bytes) -> pl.Series:
    """Vectorised over distinct values (events repeat the same person many times)."""
    uniques = nhs_numbers.drop_nulls().unique()
    lookup = pl.DataFrame(
        {"nhs": uniques, "person_id": [pseudonymise_one(v, key) for v in uniques.to_list()]},
        schema={"nhs": pl.String, "person_id": pl.String},
    )
    return (
        nhs_numbers.cast(pl.String)
        .to_frame("nhs")
        .join(lookup, on="nhs", how="left", maintain_order="left")["person_id"]
        .rename("person_id")
    )
