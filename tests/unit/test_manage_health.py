"""HEALTH in `podvisor ps`, health and probe results in `status` and --json, from what
`podvisor ready-probe` tells systemd (STATUS=) and writes to its state file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from supervisor.manage import fmt, health, ps, status, views
from supervisor.manage.inventory import Inventory
from supervisor.manage.model import ContainerStatus, PodStatus, UnitStatus


def _c(name: str, text: str, state: str = "active") -> ContainerStatus:
    u = UnitStatus.from_properties(f"pod-h@{name}.service", {"LoadState": "loaded", "ActiveState": state,
                                                              "SubState": "running", "StatusText": text})
    return ContainerStatus(name, f"h.{name}", u)


@pytest.mark.parametrize("text, state, expected", [
    ("healthy", "active", "healthy"),
    ("healthy (1/3 failed: HTTP 500 from /healthz)", "active", "healthy"),
    ("unhealthy (3/3 failed: HTTP 500 from /healthz)", "active", "unhealthy"),
    ("starting (2/30 startup probe failures: test: exit status 1)", "activating", "starting"),
    ("ready: the readiness probe passed (attempt 2)", "active", ""),  # readiness only: no health
    ("", "active", ""),
    ("healthy", "inactive", ""),  # a stopped unit's last STATUS= is history
])
def test_health_from_status(text: str, state: str, expected: str) -> None:
    assert health.health(_c("x", text, state)) == expected


def test_ps_column_and_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "RUN_DIR", tmp_path)
    good, bad, plain = _c("good", "healthy"), _c("bad", "unhealthy (3/3 failed: HTTP 500 from /healthz)"), _c("plain", "")
    pod = PodStatus("h", UnitStatus.from_properties("pod-h.service", {"ActiveState": "active"}), None, [good, bad, plain])
    lines = ps.to_table(Inventory([pod]), fmt.Palette(False)).splitlines()
    col = lines[0].split().index("HEALTH")
    assert [ln.split()[col + 1] for ln in lines[2:]] == ["healthy", "unhealthy", "-"]  # +1: "active (running)"
    data = json.loads(ps.to_json(Inventory([pod])))
    assert [c["health"] for c in data["pods"][0]["containers"]] == ["healthy", "unhealthy", None]
    assert views.container_json(bad, 0)["status_text"].startswith("unhealthy (3/3 failed")


def test_status_shows_the_last_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "RUN_DIR", tmp_path)
    bad = _c("bad", "unhealthy (2/2 failed: HTTP 500 from /healthz)")
    results = [{"probe": "liveness", "time": 1_700_000_000.0 + i, "ok": i == 0, "took": 0.004,
                "detail": "" if i == 0 else "HTTP 500 from /healthz"} for i in range(5)]
    (tmp_path / "pod-h@bad.service.health").write_text(json.dumps({"health": "unhealthy", "results": results}))
    pod = PodStatus("h", UnitStatus.from_properties("pod-h.service", {"ActiveState": "active"}), None, [bad])
    d = status.Details(pod, taken_at=1_700_000_010.0)
    text = status.to_text(d, fmt.Palette(False))
    assert "Health: unhealthy" in text
    assert text.count("liveness probe failed: HTTP 500 from /healthz (0.004s)") == 3  # the last three
    assert fmt.timestamp(1_700_000_004.0)[:19] in text
    data = json.loads(status.to_json(d))
    probes = data["containers"][0]["probes"]
    assert len(probes) == 5 and probes[0]["ok"] is True and probes[-1]["detail"] == "HTTP 500 from /healthz"
    assert probes[-1]["time"] == fmt.iso(1_700_000_004.0)
