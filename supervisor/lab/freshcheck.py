"""The fresh-machine check (scripts/check-fresh.sh): the README's first command on a machine
where nothing was installed by hand, with systemd as PID 1.

1. rootfs   a fresh Debian rootfs (debootstrap minbase + systemd-sysv from Debian's registry;
            supervisor.lab.rootfs caches it as a tarball, rebuilt when older than a week), unpacked
            into a new directory under /var/tmp.
2. copy     the committed tree (`git archive HEAD`) to LOCATION inside (default: a path with a
            blank under /root, which is 0700), as a user's clone would be.
3. install  `bash scripts/install.sh` as root in a non-booted systemd-nspawn of the rootfs that
            shares the host's network: apt and pip need Debian's registry and PyPI. No systemd
            runs, so the packages' services are not started on the host's network. Downloaded
            .debs and pip's cache are kept in /var/tmp/podvisor-rootfs/cache (--cold empties them).
4. boot     the rootfs with systemd as PID 1: `podvisor sandbox`'s own code (SandboxConfig.rootfs)
            - systemd-nspawn --boot, writable cgroups, a private network.
5. demo     exactly `bash scripts/demo.sh` from LOCATION, as root. PID 1 is systemd there, so the
            demo takes its host path (`systemctl start pod-blog.service` on that machine); its
            install.sh finds everything installed and changes nothing.

Prints `fresh SUITE: demo ok in N s` or the failing step with the last 30 lines of its log (the
whole log is kept, see --log), exit status 0 or 1. Everything but the caches is removed after.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from . import checkout, rootfs
from .sandbox import EXEC_PATH, Sandbox, SandboxConfig, SandboxError

DEFAULT_LOCATION = "/root/my checkout/podvisor"  # 0700 parent, a blank: the awkward case
WORK_BASE = Path("/var/tmp")
CLEAN_ENV = {"PATH": EXEC_PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb"}
TAIL = 30


class StepFailed(RuntimeError):
    pass


class Log:
    """One log file for the whole check; each step's part can be shown on its own."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        # O_APPEND: debootstrap writes to the same file through its own descriptor
        self.file = open(path, "ab")
        self.step_start = 0

    def begin(self, step: str) -> None:
        self.write(f"==== {step} ({time.strftime('%H:%M:%S')})\n")
        self.step_start = self.file.tell()

    def write(self, text: str | bytes) -> None:
        self.file.write(text.encode() if isinstance(text, str) else text)
        self.file.flush()

    def step_tail(self, lines: int = TAIL) -> str:
        with open(self.path, "rb") as f:
            f.seek(self.step_start)
            text = f.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:]) or "(the step printed nothing)"


class Check:
    def __init__(self, suite: str, location: str, log: Log, cold: bool, keep: bool) -> None:
        self.suite, self.location, self.log, self.cold, self.keep = suite, location, log, cold, keep
        self.times: dict[str, float] = {}
        self.work = Path(tempfile.mkdtemp(prefix=f"podvisor-fresh-{suite}-", dir=WORK_BASE))
        self.root = self.work / "root"
        self.cache = rootfs.CACHE_DIR / "cache" / suite
        self.sandbox: Sandbox | None = None

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.log.begin(name)
        print(f"fresh {self.suite}: {name} ...", flush=True)
        t0 = time.monotonic()
        try:
            yield
        except (StepFailed, SandboxError, rootfs.RootfsError, subprocess.SubprocessError, OSError) as e:
            self.log.write(f"\n{name} failed: {e}\n")
            raise StepFailed(f"{name}: {e}") from e
        finally:
            self.times[name] = time.monotonic() - t0

    def run_logged(self, argv: list[str], timeout: float, **kw: object) -> None:
        self.log.write(f"$ {' '.join(argv)}\n")
        res = subprocess.run(argv, stdout=self.log.file, stderr=subprocess.STDOUT, timeout=timeout, **kw)  # type: ignore[call-overload]
        if res.returncode:
            raise StepFailed(f"{argv[0]} exited with {res.returncode}")

    # ---- the steps

    def make_rootfs(self) -> None:
        tar = rootfs.tarball_path(self.suite)
        if self.cold:
            shutil.rmtree(self.cache, ignore_errors=True)
        fresh = not self.cold and rootfs.is_fresh(tar)
        self.log.write(f"{tar}: {'cached, less than a week old' if fresh else 'building with debootstrap'}\n")
        tar = rootfs.tarball(self.suite, rebuild=self.cold, log=self.log.path)
        rootfs.unpack(tar, self.root)
        self.site_ca_certificates()

    def site_ca_certificates(self) -> None:
        """The one piece of this site's setup a machine here needs and no install script can know:
        the network's own CA certificates (a TLS-inspecting egress proxy signs PyPI's). Debian keeps
        such site CAs in /usr/local/share/ca-certificates; they are copied there, and the
        ca-certificates package (installed by install.sh, not in minbase) adds them to the bundle."""
        src = Path("/usr/local/share/ca-certificates")
        certs = sorted(src.glob("*.crt")) if src.is_dir() else []
        dest = self.root / "usr/local/share/ca-certificates"
        dest.mkdir(parents=True, exist_ok=True)
        for cert in certs:
            shutil.copyfile(cert, dest / cert.name)
        self.log.write(f"site CA certificates from {src}: {' '.join(c.name for c in certs) or 'none'}\n")

    def copy_tree(self) -> None:
        repo = str(checkout.root())
        if status := subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True).stdout.strip():
            self.log.write(f"note: uncommitted changes are not part of the check:\n{status}\n")
            print(f"fresh {self.suite}: note: checking HEAD; uncommitted changes are not in it", flush=True)
        dest = self.root / self.location.lstrip("/")
        dest.mkdir(parents=True)  # root's, like a clone made by root; /root itself stays 0700
        archive = subprocess.Popen(["git", "-C", repo, "archive", "--format=tar", "HEAD"],
                                   stdout=subprocess.PIPE, stderr=self.log.file)
        assert archive.stdout is not None
        untar = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, stderr=self.log.file)
        archive.stdout.close()
        if archive.wait() or untar.returncode:
            raise StepFailed(f"git archive HEAD | tar -x failed ({archive.returncode}, {untar.returncode})")
        head = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
        self.log.write(f"HEAD {head} -> {self.location}\n")

    def install(self) -> None:
        """scripts/install.sh with the host's network and nothing of the host's configuration:
        a clean environment (no PIP_*, no proxies), the rootfs's own /etc (no pip.conf)."""
        nspawn = shutil.which("systemd-nspawn", path=EXEC_PATH)
        if nspawn is None:
            raise StepFailed("systemd-nspawn not found: install systemd-container (scripts/install.sh does)")
        binds = {self.cache / "apt-archives": "/var/cache/apt/archives", self.cache / "pip": "/root/.cache/pip"}
        for src in binds:
            src.mkdir(parents=True, exist_ok=True)
        argv = [nspawn, "-D", str(self.root), "--register=no", "--keep-unit", "--quiet", "--console=pipe",
                "--machine", f"fresh-{self.suite}-install", "--resolv-conf=copy-host", f"--chdir={self.location}",
                *(f"--bind={s}:{d}" for s, d in binds.items()),
                "--", "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in CLEAN_ENV.items()),
                "DEBIAN_FRONTEND=noninteractive", "bash", "scripts/install.sh"]
        try:
            self.run_logged(argv, timeout=1800, stdin=subprocess.DEVNULL,
                            env={"PATH": EXEC_PATH, "LANG": "C.UTF-8"})
        finally:
            # nspawn leaves it behind when /run is not a tmpfs ("Attempted to remove disk file system")
            with contextlib.suppress(OSError):
                Path(f"/run/systemd/nspawn/propagate/fresh-{self.suite}-install").rmdir()

    def boot(self) -> None:
        name = f"pv-fresh-{uuid.uuid4().hex[:6]}"
        self.sandbox = Sandbox(SandboxConfig(name=name, rootfs=self.root, boot_timeout=180))
        report = self.sandbox.start()
        pid1 = self.sandbox.run(["cat", "/proc/1/comm"], check=True).stdout.strip()
        self.log.write(f"sandbox {name}: {report.system_state} after {report.seconds_to_ready:.2f}s, "
                       f"PID 1 is {pid1}, failed units: {' '.join(report.failed_units) or 'none'}\n")
        if pid1 != "systemd":
            raise StepFailed(f"PID 1 inside is {pid1!r}, not systemd")

    def demo(self) -> None:
        assert self.sandbox is not None
        script = 'cd -- "$1" && exec bash scripts/demo.sh'
        self.log.write(f"$ cd {self.location!r} && bash scripts/demo.sh   (as root, inside)\n")
        res = self.sandbox.run(["bash", "-c", script, "demo", self.location], timeout=900)
        self.log.write(res.stdout + res.stderr)
        if res.returncode:
            raise StepFailed(f"bash scripts/demo.sh exited with {res.returncode}")
        if "systemd is PID 1 here" not in res.stdout:
            raise StepFailed("the demo did not take its host path (systemd as PID 1)")

    def teardown(self) -> list[str]:
        errors = []
        if self.sandbox is not None:
            if self.keep:
                print(f"fresh {self.suite}: left running: podvisor sandbox exec --name {self.sandbox.name} -- bash; "
                      f"afterwards: podvisor sandbox stop --name {self.sandbox.name}; rm -rf {self.work}")
                return []
            try:
                self.log.write(f"halting and removing the machine: {self.sandbox.stop():.1f}s\n")
            except SandboxError as e:
                errors.append(str(e))
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                  if line.split()[4].startswith(f"{self.work}/")]
        if mounts:
            errors.append(f"not removing {self.work}: still mounted: {', '.join(mounts)}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)
        return errors


def run(suite: str, location: str, log_path: Path, cold: bool = False, keep: bool = False) -> int:
    log = Log(log_path)
    check = Check(suite, location, log, cold, keep)
    steps: list[tuple[str, Callable[[], None]]] = [
        ("rootfs", check.make_rootfs), ("copy", check.copy_tree), ("install", check.install),
        ("boot", check.boot), ("demo", check.demo)]
    t0 = time.monotonic()
    failed: StepFailed | None = None
    try:
        for name, action in steps:
            with check.step(name):
                action()
    except StepFailed as e:
        failed = e
    finally:
        t_teardown = time.monotonic()
        errors = check.teardown()
        check.times["teardown"] = time.monotonic() - t_teardown
    total = time.monotonic() - t0
    for problem in errors:
        log.write(f"teardown: {problem}\n")
        print(f"fresh {suite}: teardown: {problem}", file=sys.stderr)
    if failed is not None:
        print(f"fresh {suite}: FAILED at step {failed}\n--- last {TAIL} lines of its log ({log.path}):\n"
              f"{log.step_tail()}", file=sys.stderr)
        return 1
    times = ", ".join(f"{k} {v:.0f} s" for k, v in check.times.items())
    print(f"fresh {suite}: demo ok in {check.times['demo']:.0f} s (whole check {total:.0f} s: {times}; "
          f"log {log.path})")
    return 1 if errors else 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/check-fresh.sh", description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="bookworm", help="Debian suite of the fresh machine (default: bookworm)")
    ap.add_argument("--location", default=DEFAULT_LOCATION,
                    help=f"the checkout's path inside (default: {DEFAULT_LOCATION!r})")
    ap.add_argument("--cold", action="store_true",
                    help="rebuild the rootfs tarball and empty the download caches first")
    ap.add_argument("--keep", action="store_true", help="leave the booted machine running for a look around")
    ap.add_argument("--log", type=Path, help="the whole log (default: /var/tmp/podvisor-rootfs/check-fresh-SUITE.log)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("check-fresh: must run as root (debootstrap, systemd-nspawn)", file=sys.stderr)
        return 1
    if not args.location.startswith("/") or "\n" in args.location:
        print(f"check-fresh: --location {args.location!r}: expected an absolute path", file=sys.stderr)
        return 1
    # SIGTERM (CI timeouts) unwinds like Ctrl-C, so the teardown still runs
    signal.signal(signal.SIGTERM, _interrupt)
    log_path = args.log or rootfs.CACHE_DIR / f"check-fresh-{args.suite}.log"
    return run(args.suite, args.location, log_path, cold=args.cold, keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
