"""TLS to the SMSC and on the control API (issue 17.3), with certificates made at
test time (tests/tls_certs.py): a bind over TLS delivers; an SMSC certificate from
another CA fails the bind with ``tls_failed`` in /v1/operators and backs off; an SMSC
that requires a client certificate takes ours and refuses a bind without one; the
API serves HTTPS and, with tls_client_ca, only to clients with a certificate."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
import e2e_helpers as e2e
import pytest
from tls_certs import Issued, Pki

from simulators import SimConfig, SmscSimulator
from smppd.config import ConfigError, load_config
from smppd.runtime.daemon import Daemon
from smppd.smppctl import main as smppctl_main


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


@pytest.fixture
def smsc_ca(pki: Pki) -> Issued:
    return pki.ca("smsc-ca")


@pytest.fixture
def smsc_cert(pki: Pki, smsc_ca: Issued) -> Issued:
    return pki.issue(smsc_ca, "smsc", names=["smsc.roshan.example"])


@pytest.fixture
def client_ca(pki: Pki) -> Issued:
    return pki.ca("esme-ca")


def tls_mno(cert: Issued, client_ca: Issued | None = None) -> Any:
    return e2e.mno("op", tls_cert=str(cert.cert), tls_key=str(cert.key),
                   tls_client_ca=str(client_ca.cert) if client_ca else None)


def tls_operator(sim: SmscSimulator, ca: Issued, **keys: Any) -> dict[str, Any]:
    return e2e.operator("op", [f"127.0.0.1:{sim.tls_port_of('op')}"], tls=True,
                        tls_ca=str(ca.cert), **keys)


async def operators(http: aiohttp.ClientSession, daemon: Daemon) -> Any:
    async with http.get(f"http://127.0.0.1:{daemon.api_port}/v1/operators") as resp:
        assert resp.status == 200
        return (await resp.json())["operators"]


# --------------------------------------------------------------------------- to the SMSC


async def test_a_bind_over_tls_delivers(tmp_path: Path, smsc_ca: Issued,
                                        smsc_cert: Issued) -> None:
    async with e2e.running_sim([tls_mno(smsc_cert)]) as sim:
        # The name the certificate carries, not the address dialed.
        path = e2e.write_config(tmp_path, [tls_operator(
            sim, smsc_ca, tls_server_name="smsc.roshan.example")])
        async with e2e.running_daemon(path) as daemon:
            await e2e.wait_bound(daemon)
            ids = await e2e.submit(daemon, 5)
            finals = await e2e.wait_final(daemon, ids)
            assert {f["state"] for f in finals.values()} == {"DELIVERED"}
            assert len(e2e.submits(sim, "op")) == 5
            peer = daemon.operators["op"].binds[0].conn
            assert peer is not None and peer.transport is not None
            assert peer.transport.get_extra_info("ssl_object") is not None  # on the TLS port


async def test_an_smsc_certificate_from_another_ca_fails_the_bind_and_backs_off(
        tmp_path: Path, pki: Pki, smsc_cert: Issued, http: aiohttp.ClientSession,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="smppd.bind")
    other_ca = pki.ca("someone-else")
    async with e2e.running_sim([tls_mno(smsc_cert)]) as sim:
        path = e2e.write_config(tmp_path, [tls_operator(sim, other_ca)])
        async with e2e.running_daemon(path) as daemon:
            await e2e.wait_for(lambda: sum(1 for r in caplog.records
                                           if getattr(r, "event", None) == "bind_retry") >= 2,
                               what="two retries")
            bind = (await operators(http, daemon))[0]["binds"][0]
            assert bind["state"] in ("backoff", "connecting")
            assert bind["last_error_reason"] == "tls_failed"
            assert "certificate verify failed" in bind["last_error"]
            assert bind["attempts"] >= 2
            assert sim.mno("op").counters.binds == 0 and daemon.operators["op"].bound_count == 0
            warned = [r for r in caplog.records if getattr(r, "event", None) == "bind_failing"]
            assert [getattr(r, "reason", None) for r in warned] == ["tls_failed"]


async def test_a_wrong_server_name_fails_the_bind(tmp_path: Path, smsc_ca: Issued,
                                                  smsc_cert: Issued,
                                                  http: aiohttp.ClientSession) -> None:
    async with e2e.running_sim([tls_mno(smsc_cert)]) as sim:
        path = e2e.write_config(tmp_path, [tls_operator(sim, smsc_ca,
                                                        tls_server_name="smsc.other.example")])
        async with e2e.running_daemon(path) as daemon:
            await e2e.wait_for(lambda: daemon.operators["op"].binds[0].error_reason == "tls_failed",
                               what="tls_failed")
            bind = (await operators(http, daemon))[0]["binds"][0]
            assert "smsc.other.example" in bind["last_error"] or \
                "mismatch" in bind["last_error"].lower(), bind["last_error"]


async def test_verification_off_binds_to_any_certificate_and_warns(
        tmp_path: Path, pki: Pki, smsc_cert: Issued, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="smppd.daemon")
    async with e2e.running_sim([tls_mno(smsc_cert)]) as sim:
        path = e2e.write_config(tmp_path, [tls_operator(sim, pki.ca("someone-else"),
                                                        tls_verify=False)])
        async with e2e.running_daemon(path) as daemon:
            await e2e.wait_bound(daemon)
            warned = [r for r in caplog.records if getattr(r, "event", None) == "tls_verify_off"]
            assert len(warned) == 1 and warned[0].levelno == logging.WARNING
            assert getattr(warned[0], "operator", None) == "op"


async def test_an_smsc_requiring_a_client_certificate_takes_ours(
        tmp_path: Path, pki: Pki, smsc_ca: Issued, smsc_cert: Issued,
        client_ca: Issued) -> None:
    ours = pki.issue(client_ca, "esme", client=True)
    async with e2e.running_sim([tls_mno(smsc_cert, client_ca)]) as sim:
        path = e2e.write_config(tmp_path, [tls_operator(sim, smsc_ca, tls_cert=str(ours.cert),
                                                        tls_key=str(ours.key))])
        async with e2e.running_daemon(path) as daemon:
            await e2e.wait_bound(daemon)
            ids = await e2e.submit(daemon, 3)
            finals = await e2e.wait_final(daemon, ids)
            assert {f["state"] for f in finals.values()} == {"DELIVERED"}


async def test_without_a_client_certificate_the_bind_fails_clearly(
        tmp_path: Path, pki: Pki, smsc_ca: Issued, smsc_cert: Issued, client_ca: Issued,
        http: aiohttp.ClientSession) -> None:
    strangers = pki.ca("strangers")
    foreign = pki.issue(strangers, "foreign", client=True)
    async with e2e.running_sim([tls_mno(smsc_cert, client_ca)]) as sim:
        path = e2e.write_config(tmp_path, [
            tls_operator(sim, smsc_ca),
            dict(tls_operator(sim, smsc_ca, tls_cert=str(foreign.cert), tls_key=str(foreign.key)),
                 id="op2", prefixes=["938"])])
        async with e2e.running_daemon(path) as daemon:
            for op_id in ("op", "op2"):
                await e2e.wait_for(lambda op_id=op_id: daemon.operators[op_id].binds[0].error_reason
                                   == "tls_failed", what=f"{op_id} tls_failed")
            binds = {o["id"]: o["binds"][0] for o in await operators(http, daemon)}
            assert "certificate required" in binds["op"]["last_error"], binds["op"]
            assert "unknown ca" in binds["op2"]["last_error"], binds["op2"]
            assert sim.mno("op").counters.binds == 0


# --------------------------------------------------------------------------- on the API


@contextlib.asynccontextmanager
async def https_daemon(directory: Path, server: Issued,
                       client_ca: Issued | None = None) -> AsyncIterator[Daemon]:
    """The daemon (operator "op" on the simulator) with its API over HTTPS on ``server``'s
    certificate; with ``client_ca``, only to clients with a certificate from it."""
    api = {"tls_cert": str(server.cert), "tls_key": str(server.key)}
    if client_ca is not None:
        api["tls_client_ca"] = str(client_ca.cert)
    async with e2e.running_sim([e2e.mno("op")]) as sim:
        path = e2e.write_config(directory, [e2e.operator("op", sim)], api=api)
        async with e2e.running_daemon(path) as daemon:
            yield daemon


def client_context(ca: Issued, cert: Issued | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.cert))
    if cert is not None:
        context.load_cert_chain(str(cert.cert), str(cert.key))
    return context


async def test_the_api_over_https_with_client_certificates(
        tmp_path: Path, pki: Pki, client_ca: Issued) -> None:
    api_ca = pki.ca("api-ca")
    server = pki.issue(api_ca, "api")
    platform = pki.issue(client_ca, "orchestrator", client=True)
    async with https_daemon(tmp_path, server, client_ca) as daemon, aiohttp.ClientSession() as http:
        url = f"https://127.0.0.1:{daemon.api_port}/v1/operators"
        async with http.get(url, ssl=client_context(api_ca, platform)) as resp:
            assert resp.status == 200
            assert (await resp.json())["operators"][0]["id"] == "op"
        with pytest.raises(aiohttp.ClientError):  # no client certificate: refused
            async with http.get(url, ssl=client_context(api_ca)) as resp:
                await resp.read()
        stranger = pki.issue(pki.ca("strangers"), "stranger", client=True)
        with pytest.raises(aiohttp.ClientError):  # one from another CA: refused
            async with http.get(url, ssl=client_context(api_ca, stranger)) as resp:
                await resp.read()
        with pytest.raises(aiohttp.ClientError):  # plain HTTP on the TLS port
            async with http.get(url.replace("https", "http")) as resp:
                await resp.read()


def smppctl(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, env or {}):
        code = smppctl_main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


async def test_smppctl_with_a_client_certificate(tmp_path: Path, pki: Pki,
                                                 client_ca: Issued) -> None:
    api_ca = pki.ca("api-ca")
    server = pki.issue(api_ca, "api")
    ops = pki.issue(client_ca, "ops-laptop", client=True)
    async with https_daemon(tmp_path, server, client_ca) as daemon:
        url = f"https://127.0.0.1:{daemon.api_port}"
        mine = ["--cert", str(ops.cert), "--key", str(ops.key),
                "--cacert", str(api_ca.cert)]
        code, out, _ = await asyncio.to_thread(smppctl, "--url", url, *mine, "--json",
                                               "operators")
        assert code == 0 and json.loads(out)["operators"][0]["id"] == "op"
        # The same from the environment, and the options after the command.
        env = {"SMPPCTL_URL": url, "SMPPCTL_CERT": str(ops.cert),
               "SMPPCTL_KEY": str(ops.key), "SMPPCTL_CACERT": str(api_ca.cert)}
        code, out, _ = await asyncio.to_thread(smppctl, "operator", "op", env=env)
        assert code == 0 and "op#0  bound" in out
        # No client certificate: the API refuses the connection.
        code, _, err = await asyncio.to_thread(smppctl, "--url", url, "--cacert",
                                               str(api_ca.cert), "operators")
        assert code == 3 and "cannot reach" in err
        # The API's certificate is not from a CA we were told to trust.
        code, _, err = await asyncio.to_thread(smppctl, "--url", url, "--cert",
                                               str(ops.cert), "--key", str(ops.key),
                                               "operators")
        assert code == 3 and "CERTIFICATE_VERIFY_FAILED" in err


def test_smppctl_names_the_tls_option_it_cannot_use(tmp_path: Path, pki: Pki,
                                                    client_ca: Issued) -> None:
    ops = pki.issue(client_ca, "ops-laptop", client=True)
    other = pki.issue(client_ca, "other", client=True)
    missing = str(tmp_path / "nowhere.pem")
    cases = [
        (["--cacert", missing], f"--cacert {missing}: No such file"),
        (["--cert", missing], f"--cert {missing}: No such file"),
        (["--key", str(ops.key)], "--key needs --cert"),
        (["--cert", str(ops.cert), "--key", str(other.key)], f"--key {other.key}:"),
        (["--cert", str(ops.key), "--key", str(ops.key)], "not a usable PEM file"),
    ]
    for options, text in cases:
        code, out, err = smppctl("--url", "https://127.0.0.1:9/", *options, "operators")
        assert (code, out) == (2, ""), options
        assert text in err, (options, err)


async def test_the_api_over_https_without_client_certificates(tmp_path: Path,
                                                               pki: Pki) -> None:
    api_ca = pki.ca("api-ca")
    async with https_daemon(tmp_path, pki.issue(api_ca, "api")) as daemon, \
            aiohttp.ClientSession() as http:
        url = f"https://localhost:{daemon.api_port}/healthz"
        async with http.get(url, ssl=client_context(api_ca)) as resp:
            assert resp.status == 200


# --------------------------------------------------------------------------- config


def config_error(tmp_path: Path, text: str) -> ConfigError:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


OP = ('[[operators]]\nid = "op"\nhosts = ["127.0.0.1:2775"]\nsystem_id = "esme"\n'
      'password = "pw"\n')


@pytest.mark.parametrize(("extra", "key", "message"), [
    ('tls = true\ntls_ca = "/nonexistent/ca.pem"', "operators.op.tls_ca", "file not found"),
    ('tls_ca = "/etc/hostname"', "operators.op.tls_ca", "needs tls = true"),
    ("tls_verify = false", "operators.op.tls_verify", "needs tls = true"),
    ('tls = true\ntls_key = "/etc/hostname"', "operators.op.tls_key", "needs tls_cert"),
    ('tls = true\ntls_ca = "{junk}"', "operators.op.tls_ca", "not a PEM CA certificate"),
    ('tls = true\ntls_cert = "{junk}"', "operators.op.tls_cert", "not a PEM certificate"),
    ('tls = true\ntls_server_name = "a b"', "operators.op.tls_server_name", "pattern"),
])
def test_bad_operator_tls_settings_name_the_key(tmp_path: Path, extra: str, key: str,
                                                 message: str) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    error = config_error(tmp_path, OP + extra.replace("{junk}", str(junk)) + "\n")
    assert error.key == key, str(error)
    assert message in str(error)


def test_a_client_key_that_does_not_match_its_certificate(tmp_path: Path, pki: Pki) -> None:
    ca = pki.ca("ca")
    one, two = pki.issue(ca, "one", client=True), pki.issue(ca, "two", client=True)
    error = config_error(tmp_path, OP + f'tls = true\ntls_cert = "{one.cert}"\n'
                                        f'tls_key = "{two.key}"\n')
    assert error.key == "operators.op.tls_key", str(error)
    assert "does not match the certificate" in str(error)


def test_an_encrypted_client_key_is_refused_at_load(tmp_path: Path, pki: Pki) -> None:
    from cryptography.hazmat.primitives import serialization

    ours = pki.issue(pki.ca("ca"), "esme", client=True)
    locked = tmp_path / "locked.key"
    locked.write_bytes(ours.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")))
    error = config_error(tmp_path, OP + f'tls = true\ntls_cert = "{ours.cert}"\n'
                                        f'tls_key = "{locked}"\n')
    assert error.key == "operators.op.tls_key" and "must be unencrypted" in str(error)


@pytest.mark.parametrize(("api", "key"), [
    ('tls_client_ca = "/etc/hostname"', "api.tls_client_ca"),
    ('tls_key = "/etc/hostname"', "api.tls_key"),
    ('tls_cert = "/nonexistent/api.pem"', "api.tls_cert"),
])
def test_bad_api_tls_settings_name_the_key(tmp_path: Path, api: str, key: str) -> None:
    error = config_error(tmp_path, f"[api]\n{api}\n" + OP)
    assert error.key == key, str(error)


def test_tls_keys_are_per_operator_not_defaults(tmp_path: Path) -> None:
    error = config_error(tmp_path, "[defaults]\ntls = true\n" + OP)
    assert error.key == "defaults.tls" and "each [[operators]]" in str(error)


async def test_a_plain_port_named_with_tls_says_so(tmp_path: Path, smsc_ca: Issued,
                                                   smsc_cert: Issued) -> None:
    async with e2e.running_sim([tls_mno(smsc_cert)]) as sim:
        path = e2e.write_config(tmp_path, [e2e.operator("op", sim, tls=True,
                                                        tls_ca=str(smsc_ca.cert))])
        async with e2e.running_daemon(path) as daemon:
            bind = daemon.operators["op"].binds[0]
            await e2e.wait_for(lambda: bind.error_reason == "tls_failed", what="tls_failed")
            assert bind.last_error is not None and "is this its TLS port?" in bind.last_error


async def test_a_reload_that_turns_tls_on_rebinds_over_tls(tmp_path: Path, smsc_ca: Issued,
                                                           smsc_cert: Issued) -> None:
    async with e2e.running_sim([tls_mno(smsc_cert)]) as sim:
        path = e2e.write_config(tmp_path, [e2e.operator("op", sim)])
        async with e2e.running_daemon(path) as daemon:
            await e2e.wait_bound(daemon)
            bind = daemon.operators["op"].binds[0]
            assert bind.conn is not None and bind.conn.transport is not None
            assert bind.conn.transport.get_extra_info("ssl_object") is None
            e2e.write_config(tmp_path, [tls_operator(sim, smsc_ca)])
            result = await daemon.reloader.reload(path)
            assert result.ok, result.errors
            assert {"hosts", "tls", "tls_ca"} <= set(result.plan.rebind["op"])

            def on_tls() -> bool:
                conn = bind.conn
                return (bind.bound and conn is not None and conn.transport is not None
                        and conn.transport.get_extra_info("ssl_object") is not None)
            await e2e.wait_for(on_tls, what="bound over TLS")
            finals = await e2e.wait_final(daemon, await e2e.submit(daemon, 2))
            assert {f["state"] for f in finals.values()} == {"DELIVERED"}


# --------------------------------------------------------------------------- simulator


def test_simulator_tls_keys_need_a_certificate() -> None:
    from simulators import ConfigError as SimConfigError
    from simulators import parse_config

    base = {"name": "op", "account": [{"system_id": "esme", "password": "pw"}]}
    for key, value in (("tls_key", "/x.key"), ("tls_client_ca", "/ca.pem"), ("tls_port", 3550)):
        with pytest.raises(SimConfigError) as info:
            parse_config({"mno": [dict(base, **{key: value})]})
        assert info.value.key == f"mno[0].{key}"


async def test_simulator_with_a_missing_certificate_fails_to_start(tmp_path: Path) -> None:
    from simulators import ConfigError as SimConfigError
    from simulators import parse_config

    sim = SmscSimulator(SimConfig(mnos=[e2e.mno("op", tls_cert=str(tmp_path / "none.pem"))],
                                  admin_port=None))
    with pytest.raises(SimConfigError) as info:
        await sim.start()
    assert info.value.key == "mno[0].tls_cert" and "file not found" in str(info.value)
    raw = {"name": "op", "account": [{"system_id": "esme", "password": "pw"}],
           "tls_cert": str(tmp_path / "none.pem")}
    with pytest.raises(SimConfigError) as info:
        parse_config({"mno": [raw]})  # at load already
    assert info.value.key == "mno[0].tls_cert"
