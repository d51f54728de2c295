"""auth = oidc, end to end: a verified project, its service as a process, real tokens over HTTP.

The identity provider is the project's own stand-in (``tests/identity_provider.py``: discovery,
a JWKS and tokens from keys it makes, on 127.0.0.1), run by a driver script in the project's
environment, which starts the service as ``python -m <package>`` trusting it and sends each
token.  This test checks what each got, and how often the service asked for the keys.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import DEFAULT_PACKAGE, clean_env, free_port, render, wait_for_status

pytestmark = pytest.mark.slow

DRIVER = textwrap.dedent(
    """
    import json, os, socket, subprocess, sys, tempfile, time, urllib.error, urllib.request, uuid
    from tests.identity_provider import IdentityProvider, make_key, unsigned  # scripts/ on PYTHONPATH
    from dev_identity_provider import SIGNING
    from joserfc import jws

    def free_port():
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    def call(url, token, method="GET", body=None):
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return [response.status, None, response.headers.get("Content-Type")]
        except urllib.error.HTTPError as error:
            with error:
                return [error.code, error.headers.get("WWW-Authenticate"), error.headers.get("Content-Type")]

    idp = IdentityProvider().start()
    port = free_port()
    env = {**os.environ, **idp.environment(), "MY_SERVICE_SERVER_HOST": "127.0.0.1",
           "MY_SERVICE_SERVER_PORT": str(port), "MY_SERVICE_AUTH_KEYS_REFETCH_INTERVAL": "1"}
    log = tempfile.TemporaryFile("w+b")  # not a pipe: 200 access lines would fill one
    service = subprocess.Popen([sys.executable, "-m", "PACKAGE"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    results = {}
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if call(f"{base}/health/ready", None)[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        now = int(time.time())
        valid = idp.token()
        header, body, signature = valid.split(".")
        results["valid"] = call(f"{base}/items", valid)
        results["missing"] = call(f"{base}/items", None)
        results["expired"] = call(f"{base}/items", idp.token(exp=now - 3600))
        results["not yet valid"] = call(f"{base}/items", idp.token(nbf=now + 3600))
        results["wrong issuer"] = call(f"{base}/items", idp.token(iss="https://attacker.example"))
        results["wrong audience"] = call(f"{base}/items", idp.token(aud="https://other.example"))
        results["alg none"] = call(f"{base}/items", unsigned(valid, alg="none"))
        results["forged signature"] = call(f"{base}/items", f"{header}.{body}.{signature[::-1]}")
        results["exp past any float"] = call(f"{base}/items", idp.token(exp=10**400))
        # JSON's escape of a lone surrogate, signed as it is (joserfc would not encode such text).
        claims = {"iss": idp.issuer, "aud": "https://api.example.test", "sub": "x\\ud800", "exp": now + 300,
                  "scope": "items:read items:write"}
        header_of_key = {"alg": "RS256", "kid": idp.keys[0].kid}
        surrogate = jws.serialize_compact(header_of_key, json.dumps(claims).encode(), idp.keys[0], registry=SIGNING)
        results["lone surrogate subject"] = call(f"{base}/items", surrogate)
        results["missing scope"] = call(f"{base}/items", idp.token(scope="items:read"), "POST",
                                        json.dumps({"name": "lamp", "price_cents": 1}).encode())
        time.sleep(1.1)
        fetches = idp.jwks_requests
        rotated = make_key(kid="key-2")
        results["unknown key"] = call(f"{base}/items", idp.token(key=rotated))
        idp.keys.append(rotated)
        time.sleep(1.1)
        results["rotated in"] = call(f"{base}/items", idp.token(key=rotated))
        results["fetches for the rotation"] = idp.jwks_requests - fetches
        time.sleep(1.1)
        fetches = idp.jwks_requests
        forged = [idp.token(key=make_key(kid=f"forged-{uuid.uuid4()}")) for _ in range(5)]
        results["forged flood"] = sorted({call(f"{base}/items", forged[i % 5])[0] for i in range(200)})
        results["fetches for the flood"] = idp.jwks_requests - fetches
        idp.stop()
        results["identity provider down"] = call(f"{base}/items", valid)
    finally:
        service.terminate()
        service.wait(timeout=20)
        log.seek(0)
        raw = log.read()
    try:
        output = raw.decode("utf-8")  # strict
        results["every log line UTF-8 JSON"] = all(json.loads(line) for line in output.splitlines())
    except ValueError:
        output, results["every log line UTF-8 JSON"] = raw.decode("utf-8", "replace"), False
    results["token in the log"] = valid in output or signature in output
    results["subject in the access log"] = any(
        '"subject": "alice"' in line and '"status": 200' in line for line in output.splitlines())
    print(json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with auth = oidc, locked, installed and its own suite passed (the hook verifies it)."""
    result = render(tmp_path_factory.mktemp("oidc"), {"auth": "oidc"}, skip_lock=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verified in" in result.stdout, result.stdout
    return result.project()


@pytest.mark.hostile
def test_the_running_service_takes_valid_tokens_only(project: Path) -> None:
    script = DRIVER.replace("PACKAGE", DEFAULT_PACKAGE).replace("MY_SERVICE", DEFAULT_PACKAGE.upper())
    python = project / ".venv" / "bin" / "python"
    result = subprocess.run(
        [str(python), "-c", script], cwd=project, capture_output=True, text=True,
        env=clean_env(PYTHONPATH="scripts"), timeout=180, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads(result.stdout.splitlines()[-1])
    invalid = 'Bearer error="invalid_token"'
    problem = "application/problem+json"
    assert results["valid"][0] == 200
    assert results["missing"] == [401, "Bearer", problem]
    for name in ("expired", "not yet valid", "wrong issuer", "wrong audience", "alg none", "forged signature",
                 "exp past any float"):  # fmt: skip
        assert results[name] == [401, invalid, problem], name
    assert results["lone surrogate subject"][0] == 200
    assert results["every log line UTF-8 JSON"] is True
    assert results["missing scope"] == [403, 'Bearer error="insufficient_scope", scope="items:write"', problem]
    assert results["unknown key"] == [401, invalid, problem]
    assert results["rotated in"][0] == 200, "the rotated key was fetched"
    assert results["fetches for the rotation"] == 2, "one fetch at the unknown key, one once allowed again"
    assert results["forged flood"] == [401]
    assert results["fetches for the flood"] <= 1, "200 tokens with forged key ids: at most one fetch"
    assert results["identity provider down"][0] == 200, "held keys keep serving"
    assert results["token in the log"] is False
    assert results["subject in the access log"] is True
    print(f"\n[figures] auth = oidc over HTTP: {json.dumps(results)}", file=sys.stderr)


def quick_start_calls(readme: str) -> list[tuple[str, int]]:
    """The curl lines of the README's Quick start, continuations joined, each with the status its comment names."""
    block = readme.split("With the service running (`make run`)", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    calls = []
    for line in block.replace("\\\n", " ").splitlines():
        command, _, comment = line.partition("   # ")
        status = re.match(r"\s*(\d{3})\b", comment)
        calls.append((" ".join(command.split()), int(status.group(1)) if status else 200))
    return calls


def test_the_quick_start_works_as_written(project: Path) -> None:
    """`make run` (the identity provider for development beside the service), then each curl line of the
    README's Quick start as written, its token from `make -s token`: each answers what its comment says.
    Ctrl+C then stops the service and the identity provider both."""
    readme = (project / "README.md").read_text(encoding="utf-8")
    calls = quick_start_calls(readme)
    assert [command.split()[0] for command, _ in calls] == ["curl"] * 4, calls
    assert [status for _, status in calls] == [201, 200, 401, 200]
    assert sum('-H "Authorization: Bearer $(make -s token)"' in command for command, _ in calls) == 2
    port = free_port()
    run = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"ARGS=--server-host 127.0.0.1 --server-port {port}"],
        cwd=project, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its own process group, which Ctrl+C would reach
    )
    answers = []
    try:
        wait_for_status(run, f"http://127.0.0.1:{port}/health/ready", timeout=60)
        for command, _ in calls:
            local = command.replace("localhost:8000", f"127.0.0.1:{port}")
            assert local != command
            done = subprocess.run(
                ["bash", "-c", f"{local} --silent --max-time 10 --output /dev/null --write-out '%{{http_code}}'"],
                cwd=project, env=clean_env(), capture_output=True, text=True, timeout=60, check=False,
            )
            answers.append((command, done.stdout, done.stderr))
    finally:
        os.killpg(run.pid, signal.SIGINT)  # Ctrl+C
        output = run.communicate(timeout=60)[0]
    assert [answer for _, answer, _ in answers] == [str(status) for _, status in calls], answers
    assert "identity provider for development: http://127.0.0.1:9400" in output
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(run.pid, 0)  # anything left of `make run`?
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("Ctrl+C left a process of `make run` running")
