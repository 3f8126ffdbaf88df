"""The lab: what tests, benchmarks, CI and the demo use to exercise podvisor, and not podvisor
itself. A throwaway real systemd (sandbox), private podman stores (testenv, testuser), locally
built images (images, rootfs), the fresh-machine check and the demo.

The product (errors, pods, systemd, generator, manage, probes, cli, monitor) never imports this
package at import time; `podvisor sandbox` reaches it through one lazy hand-over in supervisor/cli.py
(tests/unit/test_architecture.py holds both rules). The lab may import anything of the product.

The lab works on a checkout of the repository (units/blog, the git tree): `checkout.root()` is
$PODVISOR_CHECKOUT, which scripts/*.sh, tests/conftest.py and bench/ set; it never guesses from
where its own files happen to be installed.
"""
