"""`smppctl`: the operators' command line over the control API.

    smppctl operators                      # table of operators and binds
    smppctl operator roshan                # one operator, bind by bind
    smppctl pause roshan | resume roshan | rebind roshan
    smppctl set-tps roshan 150             # runtime only: a reload restores the config
    smppctl set-window roshan 20
    smppctl route +93791234567 --tenant demo [--source SMPPD] [--type otp]
    smppctl lease SMPPD --tenant demo      # exit 0 allowed, 1 denied
    smppctl message <message_id>           # state, times (RFC 3339), parts
    smppctl rules list | show ID | delete ID
    smppctl rules create --name otp-mtn --prefix 9377 --operator mtn:100:0 [--tenant demo]
    smppctl prefixes list [--starts-with 937] | create 9377 mtn | delete 9377
    smppctl leases list [--tenant demo] | show SMPPD | delete SMPPD
    smppctl leases create SMPPD --tenant demo [--kind ALPHANUMERIC] [--state ACTIVE]

--url (or SMPPCTL_URL, default http://127.0.0.1:8080), the token in SMPPCTL_TOKEN
(or --token; the environment keeps it out of shell history and `ps`), --json for
scripts; for an https API that requires client certificates ([api] tls_client_ca),
--cert and --key (SMPPCTL_CERT, SMPPCTL_KEY) and the CA that signed the API's own
certificate, --cacert (SMPPCTL_CACERT); these options go before or after the command.
Exit codes: 0 ok, 1 API error (or lease denied), 2 usage, 3 API unreachable, 4 not
authenticated / not allowed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from smppd.version import version

OK, API_ERROR, USAGE, UNREACHABLE, AUTH = 0, 1, 2, 3, 4


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


class Client:
    def __init__(self, url: str, token: str | None, timeout: float,
                 tls: ssl.SSLContext | None = None) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.tls = tls  # None: the system's CAs, no client certificate

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
            with urllib.request.urlopen(req, timeout=self.timeout,  # noqa: S310
                                        context=self.tls) as resp:
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


def when(value: Any) -> str | None:
    """Epoch seconds as RFC 3339 UTC (2026-12-03T09:15:02Z); None stays None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None if value is None else str(value)
    stamp = datetime.fromtimestamp(value, UTC)
    text = stamp.strftime("%Y-%m-%dT%H:%M:%S")
    if stamp.microsecond:
        text += f".{stamp.microsecond // 1000:03d}"
    return text + "Z"


def _message(body: Any, out: TextIO) -> None:
    fields = [("message", body.get("message_id")), ("state", body.get("state")),
              ("tenant", body.get("tenant_id")), ("source", body.get("source")),
              ("destination", body.get("destination")), ("operator", body.get("operator_id")),
              ("created", when(body.get("created_at"))),
              ("updated", when(body.get("updated_at"))),
              ("attempts", body.get("attempts")), ("reason", body.get("reason")),
              ("command status", body.get("command_status")),
              ("receipt", " ".join(str(v) for v in (body.get("receipt_stat"),
                                                     body.get("receipt_err")) if v) or None)]
    for label, value in fields:
        if value not in (None, ""):
            print(f"{label:<15} {value}", file=out)
    parts = body.get("parts") or []
    if parts:
        print(file=out)
        table([(f"{p.get('part')}/{p.get('total')}", p.get("state"), p.get("smsc_id"),
                p.get("command_status"), p.get("stat"), p.get("err"),
                when(p.get("submitted_at")), when(p.get("done_at"))) for p in parts],
              ("PART", "STATE", "SMSC ID", "STATUS", "STAT", "ERR", "SUBMITTED", "DONE"), out)


def _rules(body: Any, out: TextIO) -> None:
    rows = []
    for r in body.get("rules", [body] if "id" in body else []):
        ops = ", ".join(f"{o['operator_id']}:{o.get('weight', '')}:{o.get('failover_order', '')}"
                        for o in r.get("operators", []))
        rows.append((r["id"], r["name"], r.get("priority"), r.get("tenant_id"), r.get("prefix"),
                     r.get("source"), r.get("message_type"),
                     "yes" if r.get("enabled", True) else "no", when(r.get("active_from")),
                     when(r.get("active_until")), ops))
    table(rows, ("ID", "NAME", "PRIORITY", "TENANT", "PREFIX", "SOURCE", "TYPE", "ENABLED",
                 "FROM", "UNTIL", "OPERATORS (id:weight:order)"), out)


def _prefixes(body: Any, out: TextIO) -> None:
    rows = [(p["prefix"], p["operator_id"], p.get("country_code"), p.get("description"))
            for p in body.get("prefixes", [body] if "prefix" in body else [])]
    table(rows, ("PREFIX", "OPERATOR", "COUNTRY CODE", "DESCRIPTION"), out)


def _leases(body: Any, out: TextIO) -> None:
    rows = [(x["sender"], x["tenant_id"], x.get("kind"), x.get("state"),
             when(x.get("quarantine_until")))
            for x in body.get("leases", [body] if "sender" in body else [])]
    table(rows, ("SENDER", "TENANT", "KIND", "STATE", "QUARANTINE UNTIL"), out)


def _deleted(body: Any, out: TextIO) -> None:
    if isinstance(body, dict) and "deleted" in body:
        print(f"deleted {body['deleted']}", file=out)
    else:  # a rule: the API answers with the rule it deleted
        print(f"deleted rule {body.get('id')} ({body.get('name')})", file=out)


# --------------------------------------------------------------------------- commands




def _globals(p: argparse.ArgumentParser, *, top: bool) -> None:
    """Options of every command, before or after its name. After it they default to
    SUPPRESS, so they override the ones before only when given."""
    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    p.add_argument("--url", default=default(os.environ.get("SMPPCTL_URL",
                                                           "http://127.0.0.1:8080")),
                   help="the daemon's API (default: $SMPPCTL_URL, else http://127.0.0.1:8080)")
    p.add_argument("--token", default=default(None),
                   help="bearer token (prefer $SMPPCTL_TOKEN: kept out of shell history and ps)")
    p.add_argument("--cert", default=default(os.environ.get("SMPPCTL_CERT")), metavar="FILE",
                   help="client certificate (PEM) for an API that requires one "
                        "(default: $SMPPCTL_CERT); its key in it or in --key")
    p.add_argument("--key", default=default(os.environ.get("SMPPCTL_KEY")), metavar="FILE",
                   help="the client certificate's private key, PEM, not encrypted "
                        "(default: $SMPPCTL_KEY)")
    p.add_argument("--cacert", default=default(os.environ.get("SMPPCTL_CACERT")),
                   metavar="FILE", help="CA certificates (PEM) to verify the API's "
                                        "certificate with (default: $SMPPCTL_CACERT, "
                                        "else the system's)")
    p.add_argument("--json", action="store_true", default=default(False),
                   help="print the API's JSON instead of tables, for scripts")
    p.add_argument("--timeout", type=_seconds, default=default(10.0), metavar="SECONDS",
                   help="give up on the API after this long (default: 10)")
    p.add_argument("--version", action="version", version=f"smppctl {version()}")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 to 3600)")
    return value


def _time(text: str) -> float:
    """RFC 3339 (2026-12-03T10:00:00Z) or epoch seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time (RFC 3339, e.g. 2026-12-03T10:00:00Z, or epoch "
            "seconds)") from None
    if stamp.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone (add Z or +00:00)")
    return stamp.timestamp()


def _rule_operator(text: str) -> dict[str, Any]:
    """OPERATOR[:WEIGHT[:ORDER]]"""
    name, *rest = text.split(":")
    if not name or len(rest) > 2 or not all(r.isascii() and r.isdigit() for r in rest):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not OPERATOR[:WEIGHT[:FAILOVER_ORDER]] (e.g. mtn:100:0)")
    found: dict[str, Any] = {"operator_id": name}
    if rest:
        found["weight"] = int(rest[0])
    if len(rest) > 1:
        found["failover_order"] = int(rest[1])
    return found


MESSAGE_TYPES = ("transactional", "promotional", "otp", "service")
LEASE_KINDS = ("MSISDN", "SHORT_CODE", "ALPHANUMERIC")
LEASE_STATES = ("ACTIVE", "SUSPENDED", "QUARANTINED", "RELEASED")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smppctl", description="smppd control API client",
                                epilog="exit codes: 0 ok, 1 API error or lease denied, "
                                       "2 usage, 3 API unreachable, 4 not allowed")
    _globals(p, top=True)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands: list[argparse.ArgumentParser] = []

    def command(name: str, help_: str, into: Any = sub) -> argparse.ArgumentParser:
        found: argparse.ArgumentParser = into.add_parser(name, help=help_, description=help_)
        commands.append(found)
        return found

    command("operators", "list operators and their binds")
    for name, what in (("operator", "show an operator, bind by bind"),
                       ("pause", "stop sending to an operator (binds stay up)"),
                       ("resume", "send to a paused operator again"),
                       ("rebind", "rebind an operator's sessions, one at a time")):
        command(name, what).add_argument("operator", help="the operator's id")
    tps = command("set-tps", "set an operator's TPS (runtime only: a reload restores it)")
    tps.add_argument("operator", help="the operator's id")
    tps.add_argument("tps", type=float, help="messages per second")
    win = command("set-window", "set an operator's window (runtime only)")
    win.add_argument("operator", help="the operator's id")
    win.add_argument("window", type=int, help="outstanding submits per bind")
    route = command("route", "SelectOperator dry run: which operator a message would take")
    route.add_argument("destination", help="E.164 number, e.g. +93791234567")
    route.add_argument("--tenant", required=True, help="the tenant sending")
    route.add_argument("--source", help="the sender id")
    route.add_argument("--type", dest="message_type", choices=MESSAGE_TYPES,
                       help="the message type rules may match on")
    lease = command("lease", "ValidateLease: may the tenant send from this sender (exit 1 "
                    "when denied)")
    lease.add_argument("sender", help="sender id: alphanumeric, short code or MSISDN")
    lease.add_argument("--tenant", required=True, help="the tenant sending")
    command("message", "a message's state, times and parts").add_argument(
        "message_id", help="the id POST /v1/messages answered with")

    rules = command("rules", "routing rules: list, show, create, delete")
    rules_sub = rules.add_subparsers(dest="action", required=True, metavar="ACTION")
    command("list", "list the rules", rules_sub)
    for name, what in (("show", "show a rule"), ("delete", "delete a rule")):
        command(name, what, rules_sub).add_argument("id", type=int, help="the rule's id")
    create = command("create", "create a rule", rules_sub)
    create.add_argument("--name", required=True, help="a name for people")
    create.add_argument("--operator", dest="operators", action="append", required=True,
                        type=_rule_operator, metavar="OPERATOR[:WEIGHT[:ORDER]]",
                        help="an operator of the rule (repeatable): weight shares traffic "
                             "(default 100), a higher failover order is tried later (default 0)")
    create.add_argument("--priority", type=int, help="lower runs first (default 100)")
    create.add_argument("--tenant", help="match this tenant only")
    create.add_argument("--prefix", help="match destinations starting with these digits")
    create.add_argument("--source", help="match this sender id only")
    create.add_argument("--type", dest="message_type", choices=MESSAGE_TYPES,
                        help="match this message type only")
    create.add_argument("--from", dest="active_from", type=_time, metavar="TIME",
                        help="active from (RFC 3339 or epoch seconds)")
    create.add_argument("--until", dest="active_until", type=_time, metavar="TIME",
                        help="active until (RFC 3339 or epoch seconds)")
    create.add_argument("--disabled", action="store_true", help="create it switched off")

    prefixes = command("prefixes", "destination prefixes: list, create, delete")
    prefixes_sub = prefixes.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = command("list", "list the prefixes", prefixes_sub)
    listing.add_argument("--starts-with", default="", metavar="DIGITS",
                         help="only prefixes starting with these digits")
    listing.add_argument("--limit", type=int, help="at most this many (default 1000)")
    create = command("create", "create or replace a prefix", prefixes_sub)
    create.add_argument("prefix", help="destination digits, e.g. 9377")
    create.add_argument("operator", help="the operator that owns it")
    create.add_argument("--country-code", help="e.g. 93")
    create.add_argument("--description", help="a note for people")
    command("delete", "delete a prefix", prefixes_sub).add_argument(
        "prefix", help="destination digits")

    leases = command("leases", "sender leases: list, show, create, delete")
    leases_sub = leases.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = command("list", "list the leases", leases_sub)
    listing.add_argument("--tenant", help="only this tenant's leases")
    listing.add_argument("--limit", type=int, help="at most this many (default 1000)")
    for name, what in (("show", "show a lease"), ("delete", "delete a lease")):
        command(name, what, leases_sub).add_argument("sender", help="the sender id")
    create = command("create", "create or replace a lease", leases_sub)
    create.add_argument("sender", help="sender id: alphanumeric, short code or MSISDN")
    create.add_argument("--tenant", required=True, help="the tenant it is leased to")
    create.add_argument("--kind", type=str.upper, choices=LEASE_KINDS,
                        help="what the sender is (default ALPHANUMERIC)")
    create.add_argument("--state", type=str.upper, choices=LEASE_STATES,
                        help="the lease's state (default ACTIVE)")
    create.add_argument("--quarantine-until", type=_time, metavar="TIME",
                        help="with QUARANTINED: until when (RFC 3339 or epoch seconds)")
    for found in commands:
        _globals(found, top=False)
    return p


def _body_of(args: argparse.Namespace, names: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The request body: each option given, under its API field name."""
    return {field: getattr(args, attr) for attr, field in names
            if getattr(args, attr, None) is not None}


def _admin(args: argparse.Namespace, client: Client) -> tuple[Any, Any]:
    """rules / prefixes / leases: (response body, renderer)."""
    from urllib.parse import quote, urlencode

    what, action = args.command, args.action
    base = f"/v1/admin/{what}"
    render = {"rules": _rules, "prefixes": _prefixes, "leases": _leases}[what]
    if action == "list":
        query = _body_of(args, (("starts_with", "starts_with"), ("tenant", "tenant_id"),
                                ("limit", "limit")))
        query = {k: v for k, v in query.items() if v != ""}
        _, body = client.call("GET", base + (f"?{urlencode(query)}" if query else ""))
        return body, render
    key = {"rules": "id", "prefixes": "prefix", "leases": "sender"}[what]
    if action in ("show", "delete"):
        path = f"{base}/{quote(str(getattr(args, key)), safe='')}"
        _, body = client.call("GET" if action == "show" else "DELETE", path)
        return body, (render if action == "show" else _deleted)
    if what == "rules":
        body = _body_of(args, (("name", "name"), ("priority", "priority"),
                               ("tenant", "tenant_id"), ("prefix", "prefix"),
                               ("source", "source"), ("message_type", "message_type"),
                               ("active_from", "active_from"), ("active_until", "active_until"),
                               ("operators", "operators")))
        body["enabled"] = not args.disabled
    elif what == "prefixes":
        body = _body_of(args, (("prefix", "prefix"), ("operator", "operator_id"),
                               ("country_code", "country_code"), ("description", "description")))
    else:
        body = _body_of(args, (("sender", "sender"), ("tenant", "tenant_id"), ("kind", "kind"),
                               ("state", "state"), ("quarantine_until", "quarantine_until")))
    _, answer = client.call("POST", base, body)
    return answer, render


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
    elif cmd in ("rules", "prefixes", "leases"):
        body, render = _admin(args, client)
    else:  # message
        _, body = client.call("GET", f"/v1/messages/{quote(args.message_id, safe='')}")
        render = _message
    if args.json:
        print(json.dumps(body, indent=2, sort_keys=True), file=out)
    else:
        render(body, out)
    return code


def tls_context(cert: str | None, key: str | None,
                cacert: str | None) -> ssl.SSLContext | None:
    """The TLS settings for --cert, --key, --cacert; None when none is given (urllib's
    defaults). Raises ValueError naming the option whose file cannot be used."""
    if cert is None and key is None and cacert is None:
        return None
    if key is not None and cert is None:
        raise ValueError("--key needs --cert (the certificate it belongs to)")
    try:
        context = ssl.create_default_context(cafile=cacert)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"--cacert {cacert}: {_why(exc)}") from None
    if cert is not None:
        try:
            # password="": an encrypted key fails here rather than prompting on the tty.
            context.load_cert_chain(cert, key, password="")
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"--cert {cert}" + (f" / --key {key}" if key else "")
                             + f": {_why(exc)}") from None
    return context


def _why(exc: Exception) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"not a usable PEM file ({exc.reason or exc.strerror or 'unreadable'})"
    return getattr(exc, "strerror", None) or str(exc)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:  # argparse writes usage errors, --help and --version to the streams given
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = parser().parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors exit 2, --help exits 0
        return int(exc.code or 0)
    try:
        tls = tls_context(args.cert, args.key, args.cacert)
    except ValueError as exc:
        print(f"smppctl: {exc}", file=err)
        return USAGE
    client = Client(args.url, args.token or os.environ.get("SMPPCTL_TOKEN"), args.timeout, tls)
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
