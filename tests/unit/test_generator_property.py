"""Random pod definitions: either one clear DefinitionError, or units that pass
systemd-analyze verify and whose command lines read back (as systemd reads them) to exactly
the argv the generator meant."""
from __future__ import annotations

import shutil

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.generator.render import render_pod
from supervisor.generator.settings import Settings
from supervisor.generator.units import probe_argv, run_argv
from supervisor.generator.verify import verify
from supervisor.pods import kube
from supervisor.pods.model import DefinitionError, Readiness, Verbatim
from supervisor.pods.unitfile import read_unit, split_command, substitute_env

from .test_generator_escape import HOSTILE, NONCHARACTERS

SETTINGS = Settings(podvisor="/usr/bin/env", podman_global_args=("--root=/var/tmp/pv root", "--runroot=/run/pv"))
text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00" + NONCHARACTERS), max_size=12)
words = st.one_of(text, st.sampled_from(HOSTILE))
good_names = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,8}", fullmatch=True)
bad_names = st.sampled_from(["infra", "a b", "a/b", "a@b", "", "x.y", "-x", "é", "a" * 300, "web"])
names = st.one_of(good_names, good_names, good_names, good_names, bad_names)  # mostly valid: get to verify
paths = st.one_of(st.from_regex(r"/[a-z0-9 %$;'\"\\]{1,12}", fullmatch=True),
                  st.from_regex(r"/[a-z0-9 %$;'\"\\]{1,12}", fullmatch=True), st.sampled_from(["rel", "/a:b", "/ok"]))
port = st.fixed_dictionaries({"containerPort": st.integers(1, 65535) | st.just(0)},
                             optional={"hostPort": st.integers(1, 65535) | st.just(8080),
                                       "protocol": st.sampled_from(["TCP", "UDP", "SCTP", "TCP", "ICMP"]),
                                       "hostIP": st.sampled_from(["127.0.0.1", "::1", "0.0.0.0", "nope"])})
probe = st.one_of(
    st.fixed_dictionaries({"exec": st.fixed_dictionaries({"command": st.lists(words, max_size=3)})},
                          optional={"periodSeconds": st.integers(0, 5)}),
    st.fixed_dictionaries({"httpGet": st.fixed_dictionaries({"port": st.integers(1, 65535) | names},
                                                            optional={"path": st.sampled_from(["/", "/x y", "/ok?a=1"]),
                                                                      "httpHeaders": st.lists(st.fixed_dictionaries(
                                                                          {"name": names, "value": words}), max_size=2)})}),
    st.fixed_dictionaries({"tcpSocket": st.fixed_dictionaries({"port": st.integers(1, 65535)})}))
images = st.one_of(st.sampled_from(["localhost/x:1", "img", "docker.io/library/nginx@sha256:" + "a" * 64]),
                   st.sampled_from(["", "-bad", "a b", "localhost/x:1"]))
container = st.fixed_dictionaries(
    {"name": names, "image": images},
    optional={"command": st.lists(words, max_size=4), "args": st.lists(words, max_size=4),
              "env": st.lists(st.fixed_dictionaries({"name": names | words, "value": words}), max_size=3),
              "ports": st.lists(port, max_size=2), "workingDir": paths, "readinessProbe": probe,
              "resources": st.fixed_dictionaries({}, optional={"limits": st.fixed_dictionaries(
                  {}, optional={"memory": st.sampled_from(["64Mi", "1", "x", "0"]),
                                "cpu": st.sampled_from(["500m", "2", "0.0001"])})}),
              "volumeMounts": st.lists(st.fixed_dictionaries({"name": st.sampled_from(["v0", "v1", "nope"]),
                                                              "mountPath": paths}), max_size=2)})
volume = st.one_of(
    st.fixed_dictionaries({"hostPath": st.fixed_dictionaries({"path": paths}, optional={
        "type": st.sampled_from(["", "Directory", "DirectoryOrCreate", "File", "CharDevice"])})}),
    st.fixed_dictionaries({"emptyDir": st.fixed_dictionaries({}, optional={"medium": st.sampled_from(["", "Memory"])})}))
pod = st.fixed_dictionaries({
    "apiVersion": st.just("v1"), "kind": st.just("Pod"),
    "metadata": st.fixed_dictionaries({"name": names}, optional={"annotations": st.dictionaries(
        st.sampled_from(["podvisor.io/readiness", "podvisor.io/start-timeout", "other/x"]),
        st.sampled_from(["conmon", "container", "healthy", "5", "x"]), max_size=2)}),
    "spec": st.fixed_dictionaries({"containers": st.lists(container, min_size=1, max_size=3)}, optional={
        "restartPolicy": st.sampled_from(["Always", "OnFailure", "Never", "Always", "Sometimes"]),
        "volumes": st.lists(volume, max_size=2).map(lambda vs: [dict(v, name=f"v{i}") for i, v in enumerate(vs)])}),
})


# Always-valid pods whose values are hostile: these must all render, verify and read back.
safe_paths = st.from_regex(r"/[a-z0-9 %$;'\"\\#é]{1,12}", fullmatch=True)
valid_container = st.builds(
    lambda name, command, args, env, probe, workdir: {
        "name": name, "image": "localhost/x:1", "args": args, "env": env, "workingDir": workdir,
        **({"command": command} if command else {}), **({"readinessProbe": probe} if probe else {})},
    st.from_regex(r"[a-z][a-z0-9-]{0,6}", fullmatch=True).filter(lambda n: n != "infra"),
    st.lists(words, max_size=3), st.lists(words, max_size=4),
    st.lists(st.builds(lambda k, v: {"name": k, "value": v}, st.from_regex(r"[A-Z_][A-Z0-9_]{0,5}", fullmatch=True), words),
             max_size=3),
    st.none() | st.builds(lambda c: {"exec": {"command": c}}, st.lists(words, min_size=1, max_size=3))
    | st.just({"httpGet": {"port": 80, "path": "/x?y=1", "httpHeaders": [{"name": "X-A", "value": "b; c %n $d"}]}}),
    safe_paths)
valid_pod = st.builds(
    lambda name, containers, vols: {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [dict(c, volumeMounts=[{"name": f"v{i}", "mountPath": f"/mnt/{i}"}
                                                      for i in range(len(vols))]) for c in containers],
                 "volumes": [dict(v, name=f"v{i}") for i, v in enumerate(vols)]}},
    st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,10}", fullmatch=True),
    st.lists(valid_container, min_size=1, max_size=3, unique_by=lambda c: c["name"]),
    st.lists(st.one_of(st.builds(lambda p: {"hostPath": {"path": p, "type": "DirectoryOrCreate"}}, safe_paths),
                       st.just({"emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})), max_size=2))


def _read_back(text: str, key: str, unit: str) -> list[str]:
    [service] = [s for s in read_unit(text) if s.name == "Service"]
    [value] = [e.value for e in service.entries if e.key == key]
    [cmd] = split_command(value, {"t": "/run", "n": unit})
    return [a.decode() for a in substitute_env(cmd.argv, {})]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(pod)
def test_clear_error_or_verified_units(definition: dict) -> None:
    source = yaml.safe_dump(definition)
    try:
        [p], _ = kube.load_text(source, "random.yaml")
    except DefinitionError as e:
        assert str(e).startswith("random.yaml") and "\n" not in e.message.strip(), str(e)
        return
    _check_units(p, source)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_pod)
def test_valid_pods_with_hostile_values_verify_and_read_back(definition: dict) -> None:
    source = yaml.safe_dump(definition)
    [p], _ = kube.load_text(source, "valid.yaml")
    _check_units(p, source)


def _check_units(p: object, source: str) -> None:
    from supervisor.pods.model import Pod

    assert isinstance(p, Pod)
    units = render_pod(p, SETTINGS)
    result = verify(units)
    assert result.ok, f"{result}\n---\n{source}"
    for c in p.containers:
        name = f"pod-{p.name}@{c.name}.service"
        [text] = [u.text for u in units if u.name == name]
        expected = run_argv(p, c, SETTINGS)
        if c.readiness is Readiness.HEALTHY:
            assert c.probe is not None
            expected = [*probe_argv(c.probe, SETTINGS), "--", *expected]
        # our own Verbatim words carry %t/%n for systemd; everything else is literal
        expected = [a.replace("%t", "/run").replace("%n", name) if isinstance(a, Verbatim) else a for a in expected]
        assert _read_back(text, "ExecStart", name) == expected
