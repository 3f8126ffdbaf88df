"""Pod definitions -> systemd units (see README.md next to this file).

naming      unit, podman object and run-time file names (the documented contract)
escape      values written the way systemd.syntax(7) reads them back
units       a pod -> escaped values for each unit's template (the unit shape)
render      jinja2 templates in templates/ -> unit text, deterministic
verify      systemd-analyze verify over a pod's units, warnings included
writer      all-or-nothing installation of files into a directory
pipeline    load + check + render + verify in memory
hostcheck   host ports in use, missing images
install     podvisor install / uninstall (unit files + daemon-reload)
(systemd calls go through supervisor/systemd.py, shared with the management commands)
sdgen       the systemd generator for /etc/containers/systemd/
probe       podvisor ready-probe: readiness, startup and liveness probes for podman 4.3.1
checks      one probe attempt each (exec, HTTP, TCP), bounded by its timeout, no threads
health      liveness/startup/reload -> ready-probe options and [Service] lines (WatchdogSec=, ExecReload=)
command     the podvisor subcommands
"""
