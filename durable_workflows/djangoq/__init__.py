"""django-q2 glue: everything of the library that imports django-q2, and nothing else.

- `dispatcher`: `DjangoQDispatcher`, which enqueues runs on django-q2's broker, and the
  broker each process keeps;
- `runs`: the task functions a worker runs (a run, and the Schedule rows' backstop passes);
- `ticker`: the thread in each qcluster worker that fires alarms and recovers lost work;
- `lost_tasks`: the tasks a dead cluster took with it, found from what the broker shows;
- `wedge`: a cluster whose task queue is wedged ends itself.

The engine (`durable_workflows.engine`) imports none of it: it sees the dispatcher only
through its port (`engine.ports.Dispatcher`). The first release kept these modules at the top
of the package; `durable_workflows.tasks`, `.ticker`, `.lost_tasks` and `.wedge` still name
them, since settings and the broker's queued tasks do.
"""
