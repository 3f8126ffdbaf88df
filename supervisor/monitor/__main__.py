"""Entry point of `podvisor-conmon`."""
import sys


def main() -> int:
    argv = sys.argv[1:]
    if "--version" in argv:
        # podman runs this on every podman start: answer before importing anything else
        from . import VERSION_TEXT

        sys.stdout.write(VERSION_TEXT)
        return 0
    from .main import run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
