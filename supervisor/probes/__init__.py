"""The probes units run: `podvisor ready-probe` (ready, options, loop) and the health checks
(checks). A runtime package, not generator code: a probe process lives as long as its container,
so nothing here imports beyond the stdlib and supervisor.notifysocket (and this file imports
nothing at all)."""
