"""podvisor-conmon.socket and podvisor-conmon.service: the fork server as systemd starts it, by
socket activation, where systemd runs (`podvisor install` writes them: forkserver.py; by hand:
`python -I -m supervisor.generator.serverunits DIR`)."""
from __future__ import annotations

import os
import sys

from supervisor.forksocket import socket_path

SOCKET = "podvisor-conmon.socket"
SERVICE = "podvisor-conmon.service"
MARKER = "# Written by podvisor for this install's fork server"  # first line: ours to replace

SOCKET_UNIT = """\
{marker}
[Unit]
Description=podvisor-conmon fork server socket
{doc}
[Socket]
ListenStream={socket}
SocketMode=0600
DirectoryMode=0700
# root only: the server also checks SO_PEERCRED, namespaces and the install of every launcher

[Install]
WantedBy=sockets.target
"""

SERVICE_UNIT = """\
{marker}
[Unit]
Description=podvisor-conmon fork server (forks the container monitors)
{doc}Requires=podvisor-conmon.socket
After=podvisor-conmon.socket

[Service]
ExecStart={python} -I -m supervisor.monitor.server {socket}
# monitors leave this cgroup (each joins its launcher's) before they run; a first process still
# here when the server stops must finish its hand-over, so only the server itself is signalled
KillMode=process
Restart=on-failure
"""


def _needs_quoting(word: str) -> bool:
    return any(c.isspace() or c in "\"'\\%$;" for c in word)


def unit_word(word: str) -> str:
    """One ExecStart= word as systemd reads it: quoted, with specifiers and variables escaped."""
    if not _needs_quoting(word):
        return word
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def render() -> dict[str, str]:
    """File name -> text of both units for this install (its interpreter and socket)."""
    python = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "python3")
    if not os.path.exists(python):
        python = sys.executable
    # a link for `systemctl help`: the server module of this same installed package
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    doc = os.path.join(package, "monitor", "server.py")
    values = {"socket": socket_path(), "python": unit_word(python), "marker": MARKER,
              # a URL: only where the path needs no escaping (a checkout may hold blanks)
              "doc": "" if _needs_quoting(doc) else f"Documentation=file://{doc}\n"}
    return {SOCKET: SOCKET_UNIT.format(**values), SERVICE: SERVICE_UNIT.format(**values)}


def write_units(directory: str) -> list[str]:
    written = []
    for name, text in render().items():
        path = os.path.join(directory, name)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """`python -I -m supervisor.generator.serverunits DIR`: write both units into DIR by hand."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -I -m supervisor.generator.serverunits DIR\n")
        return 2
    for path in write_units(args[0]):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
