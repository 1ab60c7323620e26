"""Flow control (protocol §10): which runs start, when, and how many calls go at once.

At schedule time (:mod:`.schedule`, inside the intake's store unit) each new run goes
through rate limits and idempotency keys (:mod:`.rate_limit`, :mod:`.idempotency`), a
debounce (:mod:`.debounce`), a singleton (:mod:`.singleton`) or a batch
(:mod:`.batching`); a run they turn away is recorded as skipped, with the reason
(:mod:`.skips`). At dispatch time (:mod:`.admission`) a run passes its start gates (the
batch or debounce closes, the throttle lets it through: :mod:`.throttle`) and each call
takes its concurrency slots (:mod:`.concurrency`), in priority order (:mod:`.priority`)
and fairly across keys.

Every piece of state whose loss would change behaviour lives in the store and is written
in the unit of the work it guards: GCRA cells, batch/debounce/singleton holds, a batch's
events, the runs and their queued jobs. In memory there are only the slots of calls in
flight (leases that die with the process that holds them) and the order of the jobs that
wait, rebuilt from the store's jobs on start.
"""
