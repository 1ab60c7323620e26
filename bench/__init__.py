"""Benchmarks: Mainspring's embedded engine against peer durable-execution systems."""
