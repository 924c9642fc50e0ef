"""The one place the chaos run gets its credentials for the gateway, and decides whether the chaos
topology runs with authentication (`--auth auto|on|off`):

  on    the topology runs with `CRM_AUTH_ENABLED=true` (deploy/up.sh gives the gateway its database and
        the services its JWKS). Credentials: `--token` (else `CRM_CHAOS_TOKEN`), an access token sent
        as `Authorization: Bearer`; or `--api-key` (else `CRM_CHAOS_API_KEY`) sent as `X-API-Key`;
        with neither — the usual case, as the chaos topology starts from empty databases — an API key
        is created against the chaos topology with `crm keys create --name chaos --role admin` (the
        run creates a program and reads the books besides posting purchases), sent as `X-API-Key`.
        (`CRM_TOKEN` / `CRM_API_KEY` are deliberately not read: they belong to the shared topology.)
  off   `CRM_AUTH_ENABLED=false` for the chaos topology; no header is sent;
  auto  (default) on when credentials are given or this checkout's `crm` has `keys create`.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass

from bench.chaos.topology import REPO, Topology

MODES = ("auto", "on", "off")
CRM = REPO / ".venv" / "bin" / "crm"


@dataclass(frozen=True, slots=True)
class Credentials:
    secret: str
    kind: str  # "bearer" (an access token) | "api-key"
    source: str  # where it came from, for the log

    def headers(self) -> dict[str, str]:
        if self.kind == "bearer":
            return {"Authorization": f"Bearer {self.secret}"}
        return {"X-API-Key": self.secret}


def given(token: str | None, api_key: str | None) -> Credentials | None:
    """Credentials from the command line or the environment, if any."""
    for value, source in ((token, "--token"), (os.environ.get("CRM_CHAOS_TOKEN"), "CRM_CHAOS_TOKEN")):
        if value and value.strip():
            return Credentials(value.strip(), "bearer", source)
    for value, source in ((api_key, "--api-key"), (os.environ.get("CRM_CHAOS_API_KEY"), "CRM_CHAOS_API_KEY")):
        if value and value.strip():
            return Credentials(value.strip(), "api-key", source)
    return None


def keys_cli_available() -> bool:
    """Whether this checkout's `crm` has the `keys create` command (authentication has landed)."""
    try:
        done = subprocess.run([str(CRM), "keys", "create", "--help"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def resolve_mode(mode: str, token: str | None, api_key: str | None) -> bool:
    """Whether the chaos topology runs with authentication on."""
    if mode != "auto":
        return mode == "on"
    return given(token, api_key) is not None or keys_cli_available()


def topology_env(enabled: bool) -> dict[str, str]:
    return {"CRM_AUTH_ENABLED": "true" if enabled else "false"}


def create_key(topology: Topology) -> Credentials:
    """An admin API key created with `crm keys create` in the chaos topology's gateway database."""
    done = subprocess.run(
        [str(CRM), "keys", "create", "--name", "chaos", "--role", "admin"],
        cwd=REPO,
        env=topology.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"`crm keys create` failed: {(done.stderr or done.stdout).strip()[-500:]}")
    return Credentials(parse_key(done.stdout), "api-key", "crm keys create --role admin")


def parse_key(output: str) -> str:
    """The key `crm keys create` prints on its last line (`API key: <key>`)."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    if lines and (match := re.search(r"(\S+)$", lines[-1])):
        return match.group(1)
    raise RuntimeError(f"no key in the output of `crm keys create`: {output!r}")


def obtain(
    topology: Topology, token: str | None, api_key: str | None, *, enabled: bool
) -> Credentials | None:
    if not enabled:
        return None
    return given(token, api_key) or create_key(topology)
