"""Window features per device, and the data-quality checks that decide what may be scored."""
