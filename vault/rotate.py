"""smppd-rotate: give operators new SMPP passwords, in Vault and (for the simulator) at the SMSC.

Per operator:
 1. read the current KV version v (or the one named by --expect-version);
 2. generate a new password (8 characters, letters and digits);
 3. with --smsc-admin, install it at the SMSC first through the simulator's admin API,
    keeping the old one accepted too, so binds made with either work during the switch;
 4. write it as version v+1 with check-and-set = v: if another job wrote meanwhile,
    this one fails (exit 1) and puts the SMSC back in line with what Vault holds.

Exit codes: 0 every operator rotated, 1 one or more failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import string
import sys
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from .client import AppRoleAuth, Auth, CasConflict, TokenAuth, VaultClient, VaultError
from .credentials import MAX_PASSWORD, Credentials

log = logging.getLogger("vault.rotate")

# letters and digits only: no quoting trouble in any SMSC's config or CLI
ALPHABET = string.ascii_letters + string.digits


class RotationError(Exception):
    """One operator's rotation failed; the message is safe to print."""


def new_password(length: int = MAX_PASSWORD) -> str:
    if not 1 <= length <= MAX_PASSWORD:
        raise ValueError(f"length must be 1..{MAX_PASSWORD}")
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


class SmscAdmin:
    """The simulator's admin API: PUT /mnos/{name}/accounts/{system_id}/password."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str,
                 mno_names: dict[str, str]) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.mno_names = mno_names  # operator id -> simulator MNO name (default: the same)

    async def set_passwords(self, op_id: str, system_id: str, passwords: list[str]) -> None:
        mno = self.mno_names.get(op_id, op_id)
        url = f"{self.base_url}/mnos/{mno}/accounts/{system_id}/password"
        try:
            async with self.http.put(url, json={"passwords": passwords}) as resp:
                if resp.status != 200:
                    body = await resp.json(content_type=None)
                    error = body.get("error") if isinstance(body, dict) else None
                    raise RotationError(f"SMSC admin refused the password for MNO {mno} "
                                        f"account {system_id}: HTTP {resp.status} {error or ''}")
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise RotationError(f"SMSC admin at {self.base_url} unreachable "
                                f"({type(exc).__name__})") from None


async def rotate_operator(client: VaultClient, op_id: str, mount: str, path: str, *,
                          smsc: SmscAdmin | None = None, keep_old: bool = True,
                          expect_version: int | None = None) -> int:
    """Rotate one operator; returns the new KV version. Raises RotationError or VaultError."""
    where = f"operator {op_id} ({mount}/{path})"
    data, version = await client.kv_read(mount, path, expect_version)
    old = Credentials.from_secret(data, version, where)
    password = new_password()
    if smsc is not None:
        await smsc.set_passwords(op_id, old.system_id,
                                 [old.password, password] if keep_old else [password])
    try:
        new_version = await client.kv_write(mount, path, {**data, "password": password},
                                            cas=version)
    except CasConflict as exc:
        if smsc is not None:
            await _resync_smsc(client, smsc, op_id, mount, path, where)
        raise RotationError(f"{where}: {exc}; nothing written, rotate again if needed") from None
    log.info("%s: rotated, version %d -> %d", where, version, new_version,
             extra={"event": "rotated", "operator": op_id, "version": new_version})
    return new_version


async def _resync_smsc(client: VaultClient, smsc: SmscAdmin, op_id: str, mount: str,
                       path: str, where: str) -> None:
    """After a lost race, our password may have replaced the winner's at the SMSC: put
    back the latest version and the one before it, as the winner had installed them."""
    data, latest = await client.kv_read(mount, path)
    current = Credentials.from_secret(data, latest, where)
    passwords = [current.password]
    if latest > 1:
        prev_data, prev = await client.kv_read(mount, path, latest - 1)
        previous = Credentials.from_secret(prev_data, prev, where)
        if previous.password != current.password:
            passwords.insert(0, previous.password)
    await smsc.set_passwords(op_id, current.system_id, passwords)


def _prefix(template: str) -> str:
    head, placeholder, tail = template.partition("{operator_id}")
    if not placeholder or tail:
        raise ValueError("--all needs a --path-template that ends with {operator_id}")
    return head


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("smppd")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="smppd-rotate",
        description="Rotate SMPP passwords in Vault KV v2 (and at the simulated SMSC).")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    p.add_argument("--vault-addr", default=os.environ.get("VAULT_ADDR"),
                   help="Vault/OpenBao URL (default: $VAULT_ADDR)")
    p.add_argument("--auth", choices=("approle", "token"), default="approle",
                   help="log in with an AppRole (default) or a token from --token-env")
    p.add_argument("--role-id", default=os.environ.get("SMPPD_VAULT_ROLE_ID"),
                   help="AppRole role_id (default: $SMPPD_VAULT_ROLE_ID)")
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    p.add_argument("--secret-id-file", type=Path,
                   default=Path(cred_dir, "vault-secret-id") if cred_dir else None,
                   help="file holding the AppRole secret_id "
                        "(default: $CREDENTIALS_DIRECTORY/vault-secret-id)")
    p.add_argument("--token-env", default="VAULT_TOKEN",
                   help="environment variable holding the token for --auth token")
    p.add_argument("--mount", default="secret", help="KV v2 mount point")
    p.add_argument("--path-template", default="smppd/operators/{operator_id}",
                   help="KV path of an operator's secret (default: "
                        "smppd/operators/{operator_id})")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--operator", action="append", metavar="ID",
                     help="an operator to rotate (repeatable)")
    who.add_argument("--all", action="store_true",
                     help="every operator listed under the path template's folder")
    p.add_argument("--expect-version", type=int, metavar="N",
                   help="rotate from version N only (check-and-set against it)")
    p.add_argument("--smsc-admin", metavar="URL",
                   help="the simulator's admin API: install the password there first")
    p.add_argument("--smsc-mno", action="append", default=[], metavar="OPERATOR=NAME",
                   help="simulator MNO name of an operator (default: the operator id)")
    p.add_argument("--no-keep-old", dest="keep_old", action="store_false",
                   help="at the SMSC, accept only the new password (default: old and new)")
    p.add_argument("-v", "--verbose", action="store_true", help="log each step (INFO)")
    args = p.parse_args(argv)
    if not args.vault_addr or not args.vault_addr.startswith(("http://", "https://")):
        p.error("--vault-addr (or $VAULT_ADDR) must be an http:// or https:// URL")
    if args.auth == "approle" and (not args.role_id or args.secret_id_file is None):
        p.error("--auth approle needs --role-id and --secret-id-file "
                "(or $CREDENTIALS_DIRECTORY)")
    try:
        args.path_template.format(operator_id="x")
        if args.all:
            _prefix(args.path_template)
    except (KeyError, IndexError, ValueError) as exc:
        p.error(f"--path-template: {exc}")
    if args.expect_version is not None and (args.expect_version < 1 or args.all
                                            or len(args.operator) != 1):
        p.error("--expect-version takes a version >= 1 and exactly one --operator")
    args.mno_names = {}
    for item in args.smsc_mno:
        op_id, sep, name = item.partition("=")
        if not sep or not op_id or not name:
            p.error(f"--smsc-mno {item!r}: expected OPERATOR=NAME")
        args.mno_names[op_id] = name
    return args


async def run(argv: Sequence[str]) -> int:
    """The job; ``main`` wraps it. Bad arguments exit 2 through argparse."""
    args = parse_args(argv)
    try:
        auth: Auth = (AppRoleAuth(args.role_id, args.secret_id_file) if args.auth == "approle"
                      else TokenAuth.from_env(args.token_env))
    except VaultError as exc:
        print(f"smppd-rotate: {exc}", file=sys.stderr)
        return 2
    failures = 0
    async with VaultClient(args.vault_addr, auth) as client, aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=10)) as http:
        try:
            await client.login()
            operators = args.operator
            if args.all:
                keys = await client.kv_list(args.mount, _prefix(args.path_template))
                operators = sorted(k for k in keys if not k.endswith("/"))
                if not operators:
                    print(f"smppd-rotate: no operators under {args.mount}/"
                          f"{_prefix(args.path_template)}", file=sys.stderr)
                    return 1
        except VaultError as exc:
            print(f"smppd-rotate: {exc}", file=sys.stderr)
            return 1
        smsc = SmscAdmin(http, args.smsc_admin, args.mno_names) if args.smsc_admin else None
        for op_id in operators:
            path = args.path_template.format(operator_id=op_id)
            try:
                version = await rotate_operator(client, op_id, args.mount, path, smsc=smsc,
                                                keep_old=args.keep_old,
                                                expect_version=args.expect_version)
            except (RotationError, VaultError) as exc:
                failures += 1
                print(f"smppd-rotate: {op_id}: FAILED: {exc}", file=sys.stderr)
            else:
                print(f"smppd-rotate: {op_id}: rotated to version {version}")
    return 1 if failures else 0


def main() -> None:
    args = sys.argv[1:]
    logging.basicConfig(level=logging.INFO if "-v" in args or "--verbose" in args
                        else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
