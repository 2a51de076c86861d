# The engine's fixtures (test stage functions, a theme, a call log) serve the console tests too.
from jobs.tests.conftest import call_log, engine, reviewer, start_worker, theme  # noqa: F401
