"""`smppctl`: the operators' command line over the control API.

    smppctl operators                      # table of operators and binds
    smppctl operator roshan                # one operator, bind by bind
    smppctl pause roshan | resume roshan | rebind roshan
    smppctl set-tps roshan 150             # runtime only: a reload restores the config
    smppctl set-window roshan 20
    smppctl route +93791234567 --tenant demo [--source SMPPD] [--type otp]
    smppctl lease SMPPD --tenant demo      # exit 0 allowed, 1 denied
    smppctl message <message_id>

--url (or SMPPCTL_URL, default http://127.0.0.1:8080), the token in SMPPCTL_TOKEN
(or --token; the environment keeps it out of shell history and `ps`), --json for
scripts. Exit codes: 0 ok, 1 API error (or lease denied), 2 usage, 3 API
unreachable, 4 not authenticated / not allowed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any, TextIO

OK, API_ERROR, USAGE, UNREACHABLE, AUTH = 0, 1, 2, 3, 4


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


class Client:
    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None,
             ok: tuple[int, ...] = (200, 201, 202)) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("--url must start with http:// or https://")
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        parsed: Any
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        if status not in ok:
            raise ApiError(status, parsed)
        return status, parsed


# --------------------------------------------------------------------------- output


def table(rows: Sequence[Sequence[Any]], header: Sequence[str], out: TextIO) -> None:
    cells = [[str(c) for c in header]] + [["-" if c is None else str(c) for c in r]
                                          for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for index, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(),
              file=out)
        if index == 0:
            print("  ".join("-" * w for w in widths), file=out)


def _operators(body: Any, out: TextIO) -> None:
    rows = [(o["id"], o.get("name", ""), o["state"],
             f"{o.get('binds_up', 0)}/{o.get('binds_configured', 0)}", o["tps_limit"],
             o.get("tps_current", ""), o["window"], o.get("queued", ""), o.get("in_flight", ""))
            for o in body["operators"]]
    table(rows, ("ID", "NAME", "STATE", "BINDS", "TPS", "TPS NOW", "WINDOW", "QUEUED",
                 "IN FLIGHT"), out)


def _operator(body: Any, out: TextIO) -> None:
    _operators({"operators": [body]}, out)
    print(file=out)
    table([(b.get("bind"), b.get("state"), b.get("host"), b.get("window_in_use"),
            b.get("attempts"), b.get("last_error")) for b in body.get("binds", [])],
          ("BIND", "STATE", "HOST", "IN USE", "ATTEMPTS", "LAST ERROR"), out)


def _route(body: Any, out: TextIO) -> None:
    chosen = body.get("operator_id") or "(none)"
    print(f"operator: {chosen}    {body.get('reason', '')}", file=out)
    table([(c["operator_id"], c.get("rule_id"), c.get("failover_order"), c.get("weight"),
            "yes" if c["taken"] else "no", c["reason"]) for c in body.get("candidates", [])],
          ("CANDIDATE", "RULE", "ORDER", "WEIGHT", "TAKEN", "WHY"), out)


def _lease(body: Any, out: TextIO) -> None:
    lease = body.get("lease") or {}
    verdict = "allowed" if body.get("allowed") else "DENIED"
    print(f"{verdict}: {body.get('reason_code')}", file=out)
    if lease:
        table([(lease.get("sender"), lease.get("tenant_id"), lease.get("kind"),
                lease.get("state"), lease.get("quarantine_until"))],
              ("SENDER", "TENANT", "KIND", "STATE", "QUARANTINE UNTIL"), out)


def _kv(body: Any, out: TextIO) -> None:
    if isinstance(body, dict):
        for key, value in body.items():
            if isinstance(value, list | dict):
                value = json.dumps(value)
            print(f"{key:<22} {value}", file=out)
    else:
        print(body, file=out)


# --------------------------------------------------------------------------- commands


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smppctl", description="smppd control API client")
    p.add_argument("--url", default=os.environ.get("SMPPCTL_URL", "http://127.0.0.1:8080"))
    p.add_argument("--token", default=None, help="bearer token (prefer SMPPCTL_TOKEN)")
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.add_argument("--timeout", type=float, default=10.0)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("operators", help="list operators and their binds")
    for name in ("operator", "pause", "resume", "rebind"):
        sub.add_parser(name, help=f"{name} an operator").add_argument("operator")
    tps = sub.add_parser("set-tps", help="set an operator's TPS (runtime only)")
    tps.add_argument("operator")
    tps.add_argument("tps", type=float)
    win = sub.add_parser("set-window", help="set an operator's window (runtime only)")
    win.add_argument("operator")
    win.add_argument("window", type=int)
    route = sub.add_parser("route", help="SelectOperator dry run")
    route.add_argument("destination")
    route.add_argument("--tenant", required=True)
    route.add_argument("--source")
    route.add_argument("--type", dest="message_type",
                       choices=("transactional", "promotional", "otp", "service"))
    lease = sub.add_parser("lease", help="ValidateLease")
    lease.add_argument("sender")
    lease.add_argument("--tenant", required=True)
    sub.add_parser("message", help="a message's status").add_argument("message_id")
    return p


def run(args: argparse.Namespace, client: Client, out: TextIO) -> int:
    from urllib.parse import quote

    cmd = args.command
    code = OK
    if cmd == "operators":
        _, body = client.call("GET", "/v1/operators")
        render = _operators
    elif cmd == "operator":
        _, body = client.call("GET", f"/v1/operators/{quote(args.operator, safe='')}")
        render = _operator
    elif cmd in ("pause", "resume", "rebind"):
        _, body = client.call("POST", f"/v1/operators/{quote(args.operator, safe='')}/{cmd}")
        render = _operator
    elif cmd in ("set-tps", "set-window"):
        patch = {"tps": args.tps} if cmd == "set-tps" else {"window": args.window}
        _, body = client.call("PATCH", f"/v1/operators/{quote(args.operator, safe='')}", patch)
        render = _operator
    elif cmd == "route":
        req = {"destination": args.destination, "tenant_id": args.tenant}
        if args.source:
            req["source"] = args.source
        if args.message_type:
            req["message_type"] = args.message_type
        _, body = client.call("POST", "/v1/routing/select", req)
        render = _route
    elif cmd == "lease":
        _, body = client.call("POST", "/v1/leases/validate",
                              {"sender": args.sender, "tenant_id": args.tenant})
        code = OK if body.get("allowed") else API_ERROR
        render = _lease
    else:  # message
        _, body = client.call("GET", f"/v1/messages/{quote(args.message_id, safe='')}")
        render = _kv
    if args.json:
        print(json.dumps(body, indent=2, sort_keys=True), file=out)
    else:
        render(body, out)
    return code


def main(argv: Sequence[str] | None = None, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors exit 2, --help exits 0
        return int(exc.code or 0)
    client = Client(args.url, args.token or os.environ.get("SMPPCTL_TOKEN"), args.timeout)
    try:
        return run(args, client, out)
    except ApiError as exc:
        body = exc.body
        if args.json:
            print(json.dumps(body, indent=2, sort_keys=True), file=out)
        if args.command == "lease" and exc.status == 503 and isinstance(body, dict):
            if not args.json:
                _lease(body, out)
            return API_ERROR
        detail = body.get("detail") or body.get("title") if isinstance(body, dict) else body
        print(f"smppctl: HTTP {exc.status}: {detail}", file=err)
        if isinstance(body, dict):
            for problem in body.get("errors") or []:
                print(f"  {problem.get('field')}: {problem.get('message')}", file=err)
        return AUTH if exc.status in (401, 403) else API_ERROR
    except ValueError as exc:  # a --url that is not http(s)
        print(f"smppctl: {exc}", file=err)
        return USAGE
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"smppctl: cannot reach {args.url}: {reason}", file=err)
        return UNREACHABLE


if __name__ == "__main__":
    sys.exit(main())
