"""The price table (bundled or the admin's own) and the machine's hourly cost."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from inhouse.config import CostSettings
from inhouse.errors import InvalidRequest
from inhouse.ledger.costs import explain_hourly_cost, hourly_cost
from inhouse.ledger.prices import ApiPrice, load_prices

ONE_MODEL = """
version = "ours-3"
as_of = 2026-01-15
currency = "USD"

[[model]]
name = "in-house-rival"
provider = "Someone"
input = 4.0
output = 12.0
as_of = 2026-01-14
"""


def test_bundled_table_prices_several_vendors_each_with_a_date() -> None:
    table = load_prices(None)
    assert table.currency == "USD"
    assert table.version
    assert isinstance(table.as_of, date)
    assert len(table.prices) >= 5
    assert len({price.provider for price in table.prices}) >= 2
    assert len({price.name for price in table.prices}) == len(table.prices)
    for price in table.prices:
        assert isinstance(price.as_of, date)
        assert 0 < price.input_per_m <= price.output_per_m
        cached = price.cached_input_per_m
        assert cached is None or cached <= price.input_per_m


def test_custom_file_replaces_the_bundled_table(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(ONE_MODEL)
    table = load_prices(path)
    assert (table.version, table.as_of) == ("ours-3", date(2026, 1, 15))
    assert table.prices == [
        ApiPrice("in-house-rival", "Someone", 4.0, None, 12.0, date(2026, 1, 14))
    ]


def test_cached_tokens_are_billed_at_the_cached_price_when_there_is_one() -> None:
    with_cache = ApiPrice("a", "A", 2.0, 0.5, 8.0, date(2025, 1, 1))
    # 1M prompt tokens of which 400k cached, 100k completion
    assert with_cache.cost(1_000_000, 100_000, 400_000) == pytest.approx(1.2 + 0.2 + 0.8)
    without = ApiPrice("b", "B", 2.0, None, 8.0, date(2025, 1, 1))
    assert without.cost(1_000_000, 100_000, 400_000) == pytest.approx(2.0 + 0.8)
    assert without.cost(0, 0, 0) == 0


@pytest.mark.parametrize(
    ("edit", "complaint"),
    [
        (("output = 12.0", "output = -1"), "'in-house-rival'.*`output` must be a price >= 0"),
        (("output = 12.0", "ouptut = 12.0"), "unknown key.*ouptut"),
        (("output = 12.0", ""), "`output` must be a price"),
        (("input = 4.0", 'input = "4"'), "`input` must be a price"),
        (("as_of = 2026-01-14", 'as_of = "last week"'), "'in-house-rival'.*`as_of` must be a date"),
        (('currency = "USD"', 'currency = "EUR"'), "`currency` must be 'USD'"),
        (('name = "in-house-rival"', 'name = ""'), "`name` must be a non-empty string"),
        (("[[model]]", "[model_x]"), "unknown key"),
        (("input = 4.0", "input = 4.0 ="), "not valid TOML"),
    ],
)
def test_a_bad_price_file_is_refused_naming_file_and_entry(
    tmp_path: Path, edit: tuple[str, str], complaint: str
) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(ONE_MODEL.replace(*edit))
    with pytest.raises(InvalidRequest, match=complaint) as refused:
        load_prices(path)
    assert str(path) in refused.value.message


def test_a_model_listed_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(ONE_MODEL + ONE_MODEL[ONE_MODEL.index("[[model]]") :])
    with pytest.raises(InvalidRequest, match="'in-house-rival' is listed twice"):
        load_prices(path)


def test_a_missing_price_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match=r"nowhere\.toml: cannot be read"):
        load_prices(tmp_path / "nowhere.toml")


def test_a_set_machine_rate_is_the_hourly_cost() -> None:
    costs = CostSettings(machine_usd_per_hour=2.5, hardware_usd=99_999)
    assert hourly_cost(costs) == 2.5
    assert "machine_usd_per_hour" in explain_hourly_cost(costs)


def test_owned_hardware_costs_its_amortization_plus_electricity() -> None:
    costs = CostSettings(hardware_usd=8760, amortization_months=12, watts=500, usd_per_kwh=0.2)
    # $8,760 over 12 x 730 h = $1/h; 0.5 kW x $0.20 = $0.10/h
    assert hourly_cost(costs) == pytest.approx(1.1)
    explained = explain_hourly_cost(costs)
    assert explained.startswith("$1.1000/h")
    assert "$8,760 hardware over 12 months" in explained
    assert "500 W x $0.2/kWh" in explained
