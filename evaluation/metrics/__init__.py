"""One module per metric family; every metric returns MetricRecord values."""
