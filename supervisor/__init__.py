"""podvisor: a systemd-integrated pod supervisor."""

__version__ = "0.1.0"
