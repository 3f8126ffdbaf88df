"""podvisor: a systemd-integrated pod supervisor."""
