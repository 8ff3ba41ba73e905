"""Usage metering, quotas, prices and savings, and the tamper-evident audit trail."""
