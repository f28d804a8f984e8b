"""Escape attempts, each a real sandboxed run: all of them must fail."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.sandbox_support import (
    Background,
    bwrap_executor,
    make_spec,
    processes_matching,
    processes_with_uid,
    require_root,
    run,
    run_uids,
)

PROBE = """
import json, os, sys

def attempt(action):
    try:
        return "ok: " + str(action())
    except Exception as exc:
        return "error: " + type(exc).__name__

def read(path):
    with open(path, "rb") as fh:
        return fh.read()[:200]

def write(path):
    with open(path, "w") as fh:
        fh.write("escaped")
    return "written"
"""


@pytest.fixture
def host_sentinels(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Files with a random secret in places the sandbox must not see."""
    secret = f"sentinel-{uuid.uuid4().hex}"
    places = {
        "root_home": Path("/root") / f".sandbox-test-{uuid.uuid4().hex}",
        "var_tmp": Path("/var/tmp") / f"sandbox-test-{uuid.uuid4().hex}",
        "host_tmp": tmp_path / "server-data" / "secret.txt",
    }
    for path in places.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secret)
    yield {"secret": secret, **{name: str(path) for name, path in places.items()}}
    for path in places.values():
        path.unlink(missing_ok=True)


def _run_probe(tmp_path: Path, body: str, **kwargs: object) -> dict[str, str]:
    spec = make_spec(tmp_path, {"main.py": PROBE + body}, **kwargs)  # type: ignore[arg-type]
    outcome = run(bwrap_executor(), spec)
    assert outcome.status == "succeeded", outcome.log
    result: dict[str, str] = json.loads(outcome.log.splitlines()[-1])
    return result


def test_host_files_cannot_be_read(tmp_path: Path, host_sentinels: dict[str, str]) -> None:
    paths = [host_sentinels[k] for k in ("root_home", "var_tmp", "host_tmp")]
    paths += [f"/proc/self/root{p}" for p in paths] + [f"/proc/1/root{p}" for p in paths]
    paths += ["/etc/shadow", "/proc/self/root/etc/shadow", "/root/.bash_history"]
    paths += [str(Path(__file__).resolve()), "/work/main/pyproject.toml", "/home"]
    body = f"""
paths = {paths!r}
results = {{p: attempt(lambda p=p: read(p)) for p in paths}}
results["own"] = attempt(lambda: read("/work/main.py"))
print(json.dumps(results))
"""
    results = _run_probe(tmp_path, body)
    assert results.pop("own").startswith("ok: b'\\nimport json")  # the probe can read
    assert all(r.startswith("error") for r in results.values()), results
    assert host_sentinels["secret"] not in json.dumps(results)


def test_no_host_process_or_directory_is_reachable_through_proc(tmp_path: Path) -> None:
    body = """
pids = [p for p in os.listdir("/proc") if p.isdigit()]
found = {}
for pid in pids:
    for link in ("root", "cwd"):
        try:
            found[f"{pid}/{link}"] = sorted(os.listdir(f"/proc/{pid}/{link}"))
        except OSError as exc:
            found[f"{pid}/{link}"] = type(exc).__name__
print(json.dumps({"pids": pids, "found": found, "hostname": os.uname().nodename}))
"""
    results = dict(_run_probe(tmp_path, body))
    # Only the sandbox's own PID 1 (bubblewrap's reaper) and the program itself.
    assert len(results["pids"]) <= 3, results["pids"]
    for listing in results["found"].values():
        assert "root" not in listing and "home" not in listing, listing
    assert results["hostname"] == "sandbox"


def test_nothing_outside_the_writable_dirs_can_be_written(tmp_path: Path) -> None:
    marker = f"escape-{uuid.uuid4().hex}"
    targets = [
        f"/usr/{marker}",
        f"/etc/{marker}",
        f"/{marker}",
        f"/run/{marker}",
        "/run/automation/payload.json",
        f"/usr/lib/python3/{marker}",
        f"/proc/self/root/usr/{marker}",
    ]
    body = f"""
targets = {targets!r}
results = {{t: attempt(lambda t=t: write(t)) for t in targets}}
results["tmp"] = attempt(lambda: write("/tmp/{marker}"))
results["work"] = attempt(lambda: write("/work/{marker}"))
print(json.dumps(results))
"""
    results = _run_probe(tmp_path, body)
    assert results.pop("tmp") == "ok: written"  # the sandbox's own tmpfs...
    assert results.pop("work") == "ok: written"
    assert all(r.startswith("error") for r in results.values()), results
    assert not Path("/tmp", marker).exists()  # ...not the host's /tmp
    assert not any(Path(p).exists() for p in ("/usr", "/etc", "/run") for p in [f"{p}/{marker}"])


def test_server_environment_and_secrets_stay_out_of_reach(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server_secret = f"server-{uuid.uuid4().hex}"
    monkeypatch.setenv("AUTOMATION_DATABASE_URL", f"postgresql://u:{server_secret}@db/x")
    monkeypatch.setenv("SERVER_ONLY_TOKEN", server_secret)
    user_secret = f"user-{uuid.uuid4().hex}"
    body = f"""
everything = {{}}
for pid in [p for p in os.listdir("/proc") if p.isdigit()] + ["self"]:
    for name in ("environ", "cmdline"):
        everything[f"{{pid}}/{{name}}"] = attempt(lambda: read_all(f"/proc/{{pid}}/{{name}}"))
print(json.dumps({{
    "server_secret_seen": any({server_secret!r} in v for v in everything.values())
        or {server_secret!r} in json.dumps(dict(os.environ)),
    "pid1_environ": attempt(lambda: read_all("/proc/1/environ")),
    "user_secret_in_env": os.environ.get("API_TOKEN") == {user_secret!r},
}}))
"""
    read_all = "def read_all(path):\n    return open(path, 'rb').read().decode(errors='replace')\n"
    results = _run_probe(
        tmp_path, read_all + body, env={"AUTOMATION_RUN_ID": "r", "API_TOKEN": user_secret}
    )
    assert results["server_secret_seen"] is False
    assert results["pid1_environ"] == "ok: "  # bubblewrap itself ran with an empty environment
    assert results["user_secret_in_env"] is True


def test_secrets_are_not_on_any_host_command_line_and_nothing_runs_as_root(
    tmp_path: Path,
) -> None:
    executor = bwrap_executor()
    require_root(executor)
    secret = f"secret-{uuid.uuid4().hex}"
    marker = f"marker-{uuid.uuid4().hex}"
    spec = make_spec(
        tmp_path,
        {"main.py": "import os, time\nprint('uid', os.getuid(), flush=True)\ntime.sleep(30)\n"},
        argv=("python3", "main.py", marker),
        env={"AUTOMATION_RUN_ID": "r", "API_TOKEN": secret},
    )
    background = Background(executor, spec)
    try:
        background.wait_for_output("uid 1000")
        run_pids = processes_matching(lambda cmd: marker.encode() in cmd)
        bwrap_pids = [p for p in run_pids if Path(f"/proc/{p}/exe").resolve().name == "bwrap"]
        assert bwrap_pids, "the bubblewrap processes were not found"
        for pid in run_pids:
            assert secret.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
            uids = _status_ids(pid, "Uid:")
            assert 0 not in uids, f"process {pid} has uids {uids}"
            assert uids[0] in run_uids(executor)
            assert 0 not in _status_ids(pid, "Gid:")
        for pid in bwrap_pids:
            assert Path(f"/proc/{pid}/environ").read_bytes() == b""
        run_uid = _status_ids(run_pids[0], "Uid:")[0]
        assert set(processes_with_uid(range(run_uid, run_uid + 1))) >= set(run_pids)
    finally:
        background.cancel.set()
    assert background.result().status == "cancelled"


def _status_ids(pid: int, field: str) -> list[int]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return [int(x) for x in next(ln for ln in status if ln.startswith(field)).split()[1:]]


def test_no_privileges_inside(tmp_path: Path) -> None:
    body = """
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
import subprocess
unshare = subprocess.run(["unshare", "--user", "--map-root-user", "true"], capture_output=True)
print(json.dumps({
    "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
    "cap_eff": status["CapEff"].strip(), "cap_bnd": status["CapBnd"].strip(),
    "no_new_privs": status["NoNewPrivs"].strip(),
    "new_userns": unshare.returncode,
    "chown_root": attempt(lambda: os.chown("/work/main.py", 0, 0)),
}))
"""
    results = _run_probe(tmp_path, body)
    assert (results["uid"], results["euid"], results["gid"]) == (1000, 1000, 1000)
    assert int(results["cap_eff"], 16) == 0 and int(results["cap_bnd"], 16) == 0
    assert results["new_userns"] != 0, "nested user namespaces must be disabled"
    assert results["chown_root"].startswith("error")


def test_only_read_only_system_directories_are_mounted(tmp_path: Path) -> None:
    body = """
mounts = [line.split()[1:4:2] for line in open("/proc/self/mounts")]
listings = {"root": sorted(os.listdir("/")), "etc": sorted(os.listdir("/etc"))}
print(json.dumps({"mounts": mounts, **listings}))
"""
    results = dict(_run_probe(tmp_path, body))
    writable = {point for point, options in results["mounts"] if "rw" in options.split(",")}
    # Writable: the program's dirs and the kernel's virtual file systems only.
    assert writable <= {"/work", "/run/automation/output", "/tmp", "/dev/shm", "/proc", "/dev"} | {
        p for p in writable if p.startswith(("/dev/", "/proc/"))
    }
    assert "/usr" not in writable and "/" not in writable and "/etc" not in writable
    assert set(results["root"]) <= {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32",
                                    "proc", "run", "sbin", "tmp", "usr", "work"}  # fmt: skip
    assert "shadow" not in results["etc"] and "passwd" in results["etc"]


def test_passwd_is_the_sandbox_own(tmp_path: Path) -> None:
    results = _run_probe(tmp_path, "print(json.dumps({'passwd': open('/etc/passwd').read()}))\n")
    assert results["passwd"] != Path("/etc/passwd").read_text()
    assert "sandbox:x:1000:1000" in results["passwd"]
