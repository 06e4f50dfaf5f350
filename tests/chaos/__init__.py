"""The chaos harness: a private PostgreSQL (and Redis), a supervised 2-worker `qcluster`,
and faults injected while five-step workflows run, to prove that every instance completes
and that only steps a fault cut short run again.

`run.py` is the driver; it runs in a process of its own (see `run.run_driver`), so that its
settings point at the private server and never at the suite's or anyone else's database.
"""
