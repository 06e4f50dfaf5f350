"""Support for the tests that run real `qcluster` processes: their settings, a workflow
module whose steps log every execution, and helpers to start, stop and kill clusters."""
