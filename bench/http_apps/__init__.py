"""The apps `bench/http_workloads.py` serves on uvicorn: the benchmark functions written with
Mainspring's SDK and with the official `inngest` SDK."""
