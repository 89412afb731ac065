"""The service catalogue: what a locality team can offer a listed person, and when it fits (DESIGN §6).

One declaration file (``service_catalogue.toml`` beside this module, or the council's own file named by
``settings.offers.catalogue``) says, for every offer: its id, plain-English words, the feature rules that
make it relevant (over the feature registry's column names, so a rule cannot name a feature that does not
exist) and its weekly capacity per locality. Lists, exports, the web page and the actions of issue 11 all
read offers from :func:`load_catalogue`, never from their own copy.

Rule semantics: an offer fits a person when ANY of its ``when`` groups holds (all conditions in the group
true) and NONE of its ``unless`` conditions holds. The conditions that held are the evidence, in words
from the feature registry ("2 falls in the last 12 months"), so a team sees why the offer was suggested.
"""

from __future__ import annotations

import math
import operator
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from upstream.errors import UpstreamError

DEFAULT_CATALOGUE = Path(__file__).with_name("service_catalogue.toml")
#: Shown where no offer in the catalogue fits a listed person (never an empty cell that looks like a bug).
NO_OFFER_FITS = "No offer in the catalogue fits: review with the person what would help"

#: THE capacity rule (DESIGN §6 "weekly capacity per locality"): suggestions are never withdrawn (every row
#: keeps every offer that fits), but only an offer's weekly places are "this week"; ``pipelines.lists.
#: ration_offers`` implements it, the docs and the list page quote it.
CAPACITY_RULE = (
    "Every listed person keeps every offer that fits them (suggested_offers). Each offer's weekly places in a "
    "locality go to the people it fits in list order (new, then rising, then top; highest risk first within "
    "a section, i.e. by rank) until the places run out (offers_this_week); the others carry it as waiting "
    "list, over this week's capacity (offers_waiting)."
)

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq, "!=": operator.ne,
}
_ID_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


@dataclass(frozen=True)
class Condition:
    """``feature op value`` over one feature-table column; ``show`` = use it as evidence when it holds."""

    feature: str
    op: str
    value: bool | int | float | str
    show: bool = True

    def expr(self) -> pl.Expr:
        """Null feature values never satisfy a condition (an unknown is not evidence)."""
        return _OPS[self.op](pl.col(self.feature), pl.lit(self.value)).fill_null(False)

    def holds(self, value: Any) -> bool:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        return bool(_OPS[self.op](value, self.value))

    def evidence(self, value: Any) -> str:
        """The condition in words for this person's value (registry wording where it has one)."""
        from features.registry import reason_text

        text = reason_text(self.feature, value)
        if text:
            return text
        words = self.feature.replace("_", " ")
        if isinstance(value, bool):
            return words if value else f"not {words}"
        return f"{words} {value}"


@dataclass(frozen=True)
class Offer:
    id: str
    title: str
    text: str
    when: tuple[tuple[Condition, ...], ...]
    unless: tuple[Condition, ...]
    capacity_per_locality: int
    capacity_overrides: Mapping[str, int]

    @property
    def features(self) -> set[str]:
        return {c.feature for group in self.when for c in group} | {c.feature for c in self.unless}

    def capacity(self, locality: str) -> int:
        """Weekly places in ``locality``."""
        return int(self.capacity_overrides.get(locality, self.capacity_per_locality))

    def fits_expr(self) -> pl.Expr:
        any_group = pl.any_horizontal([pl.all_horizontal([c.expr() for c in group]) for group in self.when])
        if not self.unless:
            return any_group
        return any_group & ~pl.any_horizontal([c.expr() for c in self.unless])

    def evidence(self, row: Mapping[str, Any]) -> list[str]:
        """Words for the conditions that held for ``row`` (a feature row), in declaration order, no repeats."""
        shown: list[str] = []
        for group in self.when:
            if all(c.holds(row.get(c.feature)) for c in group):
                for c in group:
                    text = c.evidence(row.get(c.feature))
                    if c.show and text not in shown:
                        shown.append(text)
        return shown


@dataclass(frozen=True)
class ServiceCatalogue:
    offers: tuple[Offer, ...]
    path: Path

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(o.id for o in self.offers)

    def get(self, offer_id: str) -> Offer:
        for offer in self.offers:
            if offer.id == offer_id:
                return offer
        raise KeyError(offer_id)

    @property
    def features(self) -> set[str]:
        return set().union(*(o.features for o in self.offers)) if self.offers else set()

    def match(self, features: pl.DataFrame) -> pl.DataFrame:
        """Per person: ``suggested_offers`` (offer ids in catalogue order) and ``offer_evidence``
        (offers separated by " | ": "falls_prevention: 2 falls in the last 12 months | telecare: ...")."""
        missing = sorted(self.features - set(features.columns))
        if missing:
            raise UpstreamError(f"service catalogue {self.path}: feature table has no column(s) {', '.join(missing)}")
        fits = features.select(
            "person_id", *[o.fits_expr().alias(f"_fits_{i}") for i, o in enumerate(self.offers)],
            *sorted(self.features),
        )
        suggested: list[list[str]] = []
        evidence: list[str] = []
        for row in fits.iter_rows(named=True):
            ids = [o.id for i, o in enumerate(self.offers) if row[f"_fits_{i}"]]
            suggested.append(ids)
            evidence.append(" | ".join(f"{oid}: {'; '.join(self.get(oid).evidence(row))}" for oid in ids))
        return pl.DataFrame(
            {"person_id": fits["person_id"], "suggested_offers": suggested, "offer_evidence": evidence},
            schema={"person_id": pl.String, "suggested_offers": pl.List(pl.String), "offer_evidence": pl.String},
        )


# --- loading and validation --------------------------------------------------------------------------


def _fail(path: Path, where: str, problem: str) -> UpstreamError:
    return UpstreamError(f"service catalogue {path}: {where}: {problem}")


def _condition(raw: Any, path: Path, where: str, feature_types: Mapping[str, pl.DataType]) -> Condition:
    if not isinstance(raw, Mapping):
        raise _fail(path, where, "a condition must be a table like {feature = \"falls_12m\", op = \">=\", value = 1}")
    unknown = set(raw) - {"feature", "op", "value", "show"}
    if unknown:
        raise _fail(path, where, f"unknown key(s) {', '.join(sorted(unknown))}")
    feature, op, value = raw.get("feature"), raw.get("op"), raw.get("value")
    if feature not in feature_types:
        raise _fail(path, where, f"feature {feature!r} is not in the feature registry")
    if op not in _OPS:
        raise _fail(path, where, f"op {op!r} is not one of {' '.join(_OPS)}")
    dtype = feature_types[feature]
    if dtype == pl.Boolean:
        ok = isinstance(value, bool) and op in ("==", "!=")
        expected = 'true or false with op "==" or "!="'
    elif dtype.is_numeric():
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        expected = "a number"
    else:
        ok = isinstance(value, str) and op in ("==", "!=")
        expected = 'text with op "==" or "!="'
    if not ok:
        raise _fail(path, where, f"feature {feature!r} needs {expected}, got {value!r}")
    show = raw.get("show", True)
    if not isinstance(show, bool):
        raise _fail(path, where, "show must be true or false")
    return Condition(feature, op, value, show)


def _offer(raw: Any, index: int, path: Path, feature_types: Mapping[str, pl.DataType]) -> Offer:
    where = f"offer #{index + 1}"
    if not isinstance(raw, Mapping):
        raise _fail(path, where, "each [[offer]] must be a table")
    offer_id = raw.get("id")
    if not isinstance(offer_id, str) or not offer_id or not set(offer_id) <= _ID_CHARS:
        raise _fail(path, where, f"id {offer_id!r} must be lower-case letters, digits and _")
    where = f"offer {offer_id!r}"
    unknown = set(raw) - {"id", "title", "text", "when", "unless", "capacity_per_locality", "capacity"}
    if unknown:
        raise _fail(path, where, f"unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("title", "text"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise _fail(path, where, f"{key} must be non-empty text")
    groups = raw.get("when")
    if not isinstance(groups, Sequence) or not groups:
        raise _fail(path, where, "when must list at least one group {all = [conditions]}")
    when: list[tuple[Condition, ...]] = []
    for g, group in enumerate(groups):
        conditions = group.get("all") if isinstance(group, Mapping) else None
        if not isinstance(conditions, Sequence) or not conditions or set(group) != {"all"}:
            raise _fail(path, f"{where} when #{g + 1}", "a group must be {all = [one or more conditions]}")
        when.append(tuple(_condition(c, path, f"{where} when #{g + 1}", feature_types) for c in conditions))
    unless_raw = raw.get("unless", [])
    if not isinstance(unless_raw, Sequence):
        raise _fail(path, where, "unless must be a list of conditions")
    unless = tuple(_condition(c, path, f"{where} unless", feature_types) for c in unless_raw)
    capacity = raw.get("capacity_per_locality")
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 0:
        raise _fail(path, where, "capacity_per_locality must be a whole number >= 0")
    overrides = raw.get("capacity", {})
    if not isinstance(overrides, Mapping) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in overrides.values()
    ):
        raise _fail(path, where, "[offer.capacity] must map locality names to whole numbers >= 0")
    return Offer(offer_id, raw["title"].strip(), raw["text"].strip(), tuple(when), unless, capacity, dict(overrides))


def parse_catalogue(path: Path) -> ServiceCatalogue:
    """Read and validate one catalogue file; every problem names the file, the offer and what is wrong."""
    from features.registry import FEATURES

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UpstreamError(f"service catalogue {path}: file not found") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UpstreamError(f"service catalogue {path}: not valid TOML ({exc})") from exc
    unknown = set(data) - {"offer"}
    if unknown:
        raise _fail(path, "top level", f"unknown key(s) {', '.join(sorted(unknown))}; offers go in [[offer]] tables")
    raw_offers = data.get("offer")
    if not isinstance(raw_offers, list) or not raw_offers:
        raise _fail(path, "top level", "no [[offer]] declared")
    feature_types = {name: feature.dtype for name, feature in FEATURES.items()}
    offers = tuple(_offer(raw, i, path, feature_types) for i, raw in enumerate(raw_offers))
    seen: set[str] = set()
    for offer in offers:
        if offer.id in seen:
            raise _fail(path, f"offer {offer.id!r}", "declared twice")
        seen.add(offer.id)
    return ServiceCatalogue(offers, path)


def load_catalogue(settings: Any) -> ServiceCatalogue:
    """The catalogue in force: ``settings.offers.catalogue`` if set, else the shipped default."""
    offers_settings = getattr(settings, "offers", None)
    path = getattr(offers_settings, "catalogue", None) or DEFAULT_CATALOGUE
    return parse_catalogue(Path(path))


def offer_summary(rows: Iterable[Mapping[str, Any]], catalogue: ServiceCatalogue, locality: str) -> list[dict[str, Any]]:
    """Per offer, for one locality's list rows: the weekly places against the people it was suggested to, with
    a place and waiting (``upstream.list_row.OFFER_SUMMARY``). People counts are small-number suppressed here
    ("<8", others rounded to 5), so raw counts never leave this function."""
    from upstream.disclosure import show_count

    suggested: dict[str, int] = dict.fromkeys(catalogue.ids, 0)
    with_place = dict(suggested)
    waiting = dict(suggested)
    for row in rows:
        for key, counts in (("suggested_offers", suggested), ("offers_this_week", with_place),
                            ("offers_waiting", waiting)):
            for offer_id in (row.get(key) or "").split(";"):
                if offer_id in counts:
                    counts[offer_id] += 1
    return [{"offer": o.id, "title": o.title, "weekly_capacity": o.capacity(locality),
             "suggested": show_count(suggested[o.id]), "with_place": show_count(with_place[o.id]),
             "waiting": show_count(waiting[o.id])} for o in catalogue.offers]
