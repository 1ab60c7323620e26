"""Serving functions over HTTP: one framework-neutral handler and thin adapters."""
