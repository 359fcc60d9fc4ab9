"""Alerts: what happened (``messages``) and how it is delivered (``webhook``); no Dagster.
The sensor that finds the events and remembers what was sent is ``mlplatform.defs.alerts``."""
