"""`podvisor ps|status|logs|top|start|stop|restart`: one place to see and drive installed pods.

Where each fact comes from (nothing is parsed out of systemctl's output):

* systemd, over D-Bus (pystemd, ``bus``): which pods exist (unit files named ``pod-*.service``
  whose first line is the generator's MARKER), every unit's state, readiness (a ``Type=notify``
  container unit is ``active`` only after READY=1), restarts (NRestarts), main PID (the
  container's podvisor-conmon monitor), timestamps, failure results; jobs for start/stop.
* the processes, with psutil (``procs``): the monitor's descendants (it is a child subreaper, so
  the container's init and everything it forks stay below it) plus whatever else sits in the
  container's own cgroup (``podman exec`` sessions, which have their own monitor).
* podman (``podman``): container ids, image, published ports; run the way the unit runs it.
* the journal (``journal``, via ``journalctl -o json``): container output (journald log driver,
  matched on CONTAINER_NAME), systemd's own messages about the units; k8s-file logs are read
  from the file podman names.

``command.register`` adds the subcommands; the rest of the package is import-light.
"""
