"""The public catalogue: services, data categories, purposes and published data agreements."""
