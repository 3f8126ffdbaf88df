"""podvisor-conmon: a conmon 2.1.6 compatible container monitor."""
