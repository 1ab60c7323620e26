"""Send the seed's two events to a running ``mainspring dev`` and print the runs' results.

python -m examples.send_seed_events [http://127.0.0.1:8288]
"""

from __future__ import annotations

import sys
import time

import httpx

import mainspring as inngest


def main() -> None:
    server = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8288"
    client = inngest.Client(app_id="seed-sender", is_production=False, event_api_base_url=server)
    events = [
        inngest.Event(name="my-event", data={"user_id": 42}),
        inngest.Event(name="my-dynamic-event", data={"user_ids": list(range(25))}),
    ]
    for event, event_id in zip(events, client.send_sync(events), strict=True):
        deadline = time.monotonic() + 30
        while True:
            runs = httpx.get(f"{server}/v1/events/{event_id}/runs").json()["data"]
            if runs and all(r["status"] not in ("Running", "Scheduled") for r in runs):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{event.name}: runs did not finish: {runs}")
            time.sleep(0.1)
        for run in runs:
            print(f"{event.name}: run {run['run_id']} {run['status']} -> {run['output']}")


if __name__ == "__main__":
    main()
