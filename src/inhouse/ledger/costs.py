"""What this machine costs per hour, from the `costs` settings, and how that was worked out."""

from __future__ import annotations

from inhouse.config import CostSettings

HOURS_PER_MONTH = 730  # 365 days x 24 h / 12: the usual figure for monthly cloud rates


def hourly_cost(costs: CostSettings) -> float:
    """Dollars per hour: the set machine rate, else amortized hardware plus electricity."""
    if costs.machine_usd_per_hour is not None:
        return costs.machine_usd_per_hour
    return _hardware_per_hour(costs) + _power_per_hour(costs)


def explain_hourly_cost(costs: CostSettings) -> str:
    """One line telling how `hourly_cost` got its figure, for a report's footer."""
    total = hourly_cost(costs)
    if costs.machine_usd_per_hour is not None:
        return f"${total:.4f}/h (costs.machine_usd_per_hour)"
    return (
        f"${total:.4f}/h = ${costs.hardware_usd:,.0f} hardware over "
        f"{costs.amortization_months:g} months x {HOURS_PER_MONTH} h "
        f"(${_hardware_per_hour(costs):.4f}/h) + {costs.watts:g} W x "
        f"${costs.usd_per_kwh:g}/kWh (${_power_per_hour(costs):.4f}/h)"
    )


def _hardware_per_hour(costs: CostSettings) -> float:
    return costs.hardware_usd / (costs.amortization_months * HOURS_PER_MONTH)


def _power_per_hour(costs: CostSettings) -> float:
    return costs.watts / 1000 * costs.usd_per_kwh
