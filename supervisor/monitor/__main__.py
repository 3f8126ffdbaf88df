"""Entry point of `podvisor-conmon` (started by bin/podvisor-conmon)."""
import os
import sys


def main() -> int:
    argv = sys.argv[1:]
    if "--version" in argv:
        # podman runs this on every podman start: answer before importing anything else
        from . import VERSION_TEXT

        sys.stdout.write(VERSION_TEXT)
        return 0
    from .identity import set_identity
    from .startup import run

    set_identity(argv)
    code = run(argv)
    # the container is gone and the exit command done: skip the interpreter's teardown
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
