"""Usage metering, quotas, prices and savings."""
