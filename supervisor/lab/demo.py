"""The README's main job: the blog pod under systemd, end to end.

Builds the blog image (no registry: from Debian's nginx-light on this host), installs the
units `podvisor generate` makes from units/blog/blog.yaml, runs `systemctl start
pod-blog.service` - which returns only once both containers' readiness probes pass - and
fetches the blog through the reverse-proxy sidecar. Where PID 1 is not systemd (as in many CI
jobs), all of it happens inside a throwaway real systemd (`podvisor sandbox`), and it says so.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from supervisor.errors import UserError

from . import checkout
from .images import BLOG_IMAGE, ensure_image

POD_UNIT = "pod-blog.service"
URL = "http://127.0.0.1:8080/"
FETCH = (
    "import sys, urllib.request\n"
    "r = urllib.request.urlopen(sys.argv[1], timeout=10)\n"
    "print(r.status, r.headers.get('X-Served-By'))\n"
    "print(r.read().decode())\n"
)


class DemoError(UserError):
    pass


def systemd_is_pid1() -> bool:
    try:
        return Path("/proc/1/comm").read_text().strip() == "systemd" and Path("/run/systemd/system").is_dir()
    except OSError:
        return False


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


class Host:
    """This machine's own systemd and podman."""

    def run(self, argv: list[str], input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(argv, input=input, capture_output=True, text=True)
        if check and res.returncode:
            raise DemoError(f"{shlex.join(argv)}: exit {res.returncode}\n{res.stdout}{res.stderr}")
        return res

    def podman(self, *args: str, check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["podman", *args], input=input, capture_output=True, check=check)


class InSandbox(Host):
    def __init__(self, sb: object) -> None:
        self.sb = sb

    def run(self, argv: list[str], input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        res: subprocess.CompletedProcess[str] = self.sb.run(argv, input=input, timeout=300)  # type: ignore[attr-defined]
        if check and res.returncode:
            raise DemoError(f"{shlex.join(argv)} (in the sandbox): exit {res.returncode}\n{res.stdout}{res.stderr}")
        return res

    def podman(self, *args: str, check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        res: subprocess.CompletedProcess[bytes] = self.sb.podman(  # type: ignore[attr-defined]
            *args, check=check, input=input)
        return res


def blog(where: Host) -> None:
    podvisor = str(Path(sys.executable).parent / "podvisor")
    say(f"building {BLOG_IMAGE} from this host's Debian packages (no registry)")
    ensure_image(where.podman, BLOG_IMAGE)
    say("podvisor install units/blog/blog.yaml")
    # the sandbox binds the checkout in
    out = where.run([podvisor, "install", str(checkout.path("units", "blog", "blog.yaml"))])
    print(out.stdout + out.stderr, end="")
    say(f"systemctl start {POD_UNIT} (returns when every container's readiness probe passes)")
    t0 = time.monotonic()
    res = where.run(["systemctl", "start", POD_UNIT], check=False)
    took = time.monotonic() - t0
    if res.returncode:
        status = where.run(["systemctl", "status", "--no-pager", "-n", "20", "pod-blog*"], check=False)
        raise DemoError(f"systemctl start {POD_UNIT} failed after {took:.1f}s:\n{res.stderr}{status.stdout}")
    say(f"{POD_UNIT} started in {took:.1f}s")
    say("podvisor ps")
    print(where.run([podvisor, "ps"]).stdout, end="")
    say(f"GET {URL} through the proxy sidecar")
    page = where.run([sys.executable, "-c", FETCH, URL])
    print(page.stdout, end="")
    if "Hello from the podvisor blog" not in page.stdout or "podvisor-blog-proxy" not in page.stdout:
        raise DemoError("the page did not come from the blog through the proxy")
    monitors = where.run(["sh", "-c", "for u in $(systemctl list-units --plain --no-legend 'pod-blog@*' | "
                                      "awk '{print $1}'); do p=$(systemctl show -p MainPID --value $u); "
                                      "echo \"$u main PID $p: $(tr '\\0' ' ' < /proc/$p/cmdline | cut -c1-60)\"; done"])
    print(monitors.stdout, end="")
    say("the blog is served; every container is supervised by podvisor-conmon under systemd")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="demo", description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="leave the sandbox (and the pod) running")
    ap.add_argument("--name", default="podvisor-demo", help="sandbox name (when PID 1 is not systemd)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("demo: must run as root (systemd units, podman)", file=sys.stderr)
        return 1
    try:
        if systemd_is_pid1():
            say("systemd is PID 1 here: installing the blog pod on this host")
            blog(Host())
            return 0
        from .sandbox import Sandbox, SandboxConfig

        say("PID 1 is not systemd here: running everything inside a throwaway real systemd "
            f"(podvisor sandbox {args.name!r}: systemd-nspawn over an overlay of /)")
        sb = Sandbox(SandboxConfig(name=args.name))
        report = sb.start()
        say(f"sandbox booted in {report.seconds_to_ready:.2f}s ({report.system_state})")
        try:
            blog(InSandbox(sb))
        finally:
            if args.keep:
                say(f"left running: `podvisor sandbox exec --name {args.name} -- systemctl status 'pod-blog*'`; "
                    f"`podvisor sandbox stop --name {args.name}` removes it")
            else:
                sb.stop()
                say("sandbox stopped and removed")
        return 0
    except UserError as e:  # DemoError, SandboxError, CheckoutError
        print(f"demo: FAILED: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
