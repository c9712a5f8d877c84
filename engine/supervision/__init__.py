"""Market supervision and information disclosure: pure consumers of the engine's events.

Nothing here is called by ``Engine.apply``, so nothing here can change trading. Both
consumers take the events of each command in journal order (``observe(events)``) and
keep only bounded state, so the same journal always gives the same alerts and the same
reports: the gateway feeds them the durable events it releases, start-up re-derives them
by replaying the journal, and a cluster-mode follower can run them on the event stream.

* ``thresholds``: the ``[surveillance]`` and ``[disclosure]`` configuration tables;
* ``alerts``: the ``Alert`` record;
* ``surveillance``: ``Surveillance``, the detectors (docs/supervision.md);
* ``disclosure``: ``DayReports``, the day's market report and its JSON/CSV bytes
  (docs/disclosure.md).
"""
