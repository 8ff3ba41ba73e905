"""The price table of commercial APIs: a versioned TOML file, bundled or the admin's own."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from datetime import date, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from inhouse.errors import InvalidRequest

BUNDLED = "prices.toml"
PER = 1_000_000  # prices are per million tokens
TABLE_KEYS = {"version", "as_of", "currency", "model"}
MODEL_KEYS = {"name", "provider", "input", "cached_input", "output", "training", "as_of"}
CURRENCY = "USD"  # the local cost model is in dollars too, so the two compare directly


@dataclass(frozen=True)
class ApiPrice:
    """One API's list prices in dollars per million tokens, and when they were checked."""

    name: str
    provider: str
    input_per_m: float
    cached_input_per_m: float | None
    output_per_m: float
    as_of: date
    training_per_m: float | None = None  # fine-tuning, per training token; None: not offered

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        """Dollars for this traffic; `cached_tokens` are the part of `prompt_tokens` cached."""
        cached = min(max(cached_tokens, 0), prompt_tokens)
        cached_price = self.cached_input_per_m
        if cached_price is None:
            cached_price = self.input_per_m
        dollars = (
            (prompt_tokens - cached) * self.input_per_m
            + cached * cached_price
            + completion_tokens * self.output_per_m
        )
        return dollars / PER

    def training_cost(self, trained_tokens: int) -> float | None:
        """Dollars for fine-tuning on this many tokens (all epochs); None if not offered."""
        if self.training_per_m is None:
            return None
        return trained_tokens * self.training_per_m / PER


@dataclass(frozen=True)
class PriceTable:
    """Every API priced, in the file's order; `version` and `as_of` label the reports."""

    version: str
    as_of: date
    currency: str
    prices: list[ApiPrice]


def load_prices(path: Path | None = None) -> PriceTable:
    """Read and check a price file (None: the bundled one); InvalidRequest names what is wrong."""
    if path is None:
        source = resources.files("inhouse.ledger").joinpath(BUNDLED)
        name, text = f"bundled {BUNDLED}", source.read_text(encoding="utf-8")
    else:
        name = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise _invalid(name, f"cannot be read ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _invalid(name, f"is not valid TOML ({exc})") from None
    return _table(name, data)


def _invalid(name: str, problem: str) -> InvalidRequest:
    return InvalidRequest(f"price file {name}: {problem}", param="price_file")


def _table(name: str, data: dict[str, Any]) -> PriceTable:
    _no_unknown(name, "the table", data, TABLE_KEYS)
    version = data.get("version")
    if not isinstance(version, str | int) or isinstance(version, bool) or not str(version):
        raise _invalid(name, '`version` must be a string such as "2025.06"')
    currency = data.get("currency", CURRENCY)
    if currency != CURRENCY:
        raise _invalid(name, f"`currency` must be {CURRENCY!r} (got {currency!r})")
    models = data.get("model")
    if not isinstance(models, list) or not models:
        raise _invalid(name, "it lists no [[model]] entries")
    prices = [_price(name, i, entry) for i, entry in enumerate(models, start=1)]
    seen: set[str] = set()
    for price in prices:
        if price.name in seen:
            raise _invalid(name, f"model {price.name!r} is listed twice")
        seen.add(price.name)
    return PriceTable(str(version), _date(name, "the table", data.get("as_of")), currency, prices)


def _price(name: str, index: int, entry: Any) -> ApiPrice:
    if not isinstance(entry, dict):
        raise _invalid(name, f"[[model]] #{index} is not a table")
    where = f"[[model]] #{index} ({entry.get('name', 'unnamed')!r})"
    _no_unknown(name, where, entry, MODEL_KEYS)
    for field in ("name", "provider"):
        if not isinstance(entry.get(field), str) or not entry[field].strip():
            raise _invalid(name, f"{where}: `{field}` must be a non-empty string")
    cached, training = entry.get("cached_input"), entry.get("training")
    return ApiPrice(
        name=entry["name"].strip(),
        provider=entry["provider"].strip(),
        input_per_m=_amount(name, where, "input", entry.get("input")),
        cached_input_per_m=None if cached is None else _amount(name, where, "cached_input", cached),
        output_per_m=_amount(name, where, "output", entry.get("output")),
        as_of=_date(name, where, entry.get("as_of")),
        training_per_m=None if training is None else _amount(name, where, "training", training),
    )


def _amount(name: str, where: str, field: str, value: Any) -> float:
    valid = isinstance(value, int | float) and not isinstance(value, bool)
    if not valid or not math.isfinite(value) or value < 0:
        raise _invalid(name, f"{where}: `{field}` must be a price >= 0 in USD per 1M tokens")
    return float(value)


def _date(name: str, where: str, value: Any) -> date:
    """A TOML date (as_of = 2025-06-01) or the same written as a string."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise _invalid(name, f"{where}: `as_of` must be a date such as 2025-06-01")


def _no_unknown(name: str, where: str, data: dict[str, Any], known: set[str]) -> None:
    # a misspelt optional key ("cached_inpt") would otherwise be dropped without a word
    unknown = sorted(set(data) - known)
    if unknown:
        raise _invalid(name, f"{where}: unknown key(s) {', '.join(unknown)}")
