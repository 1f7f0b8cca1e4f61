"""smppd.config: the conf files load, every rule names its key and the file, no secret leaks."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from smppd.config import (
    DEFAULT_STATUS_TABLE,
    ConfigError,
    ConfigFileError,
    StatusRule,
    check_config_command,
    load_config,
)
from smppd.protocol.constants import Status

CONF = Path(__file__).resolve().parents[2] / "conf"
SECRET = "s3cr3t!x"

BASE = f"""
[[operators]]
id = "roshan"
mnc = ["40"]
prefixes = ["9379"]
hosts = ["127.0.0.1:2775"]
system_id = "smppd-roshan"
password = "{SECRET}"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "smppd.toml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={} if env is None else env)
    err = info.value
    assert err.file == str(path)
    for line in str(err).splitlines():
        assert line.startswith(f"{path}: ")
    assert SECRET not in str(err)
    return err


def with_op(line: str) -> str:
    """BASE with one operator line set (replacing the line for that key if BASE has it)."""
    key = line.split("=")[0].strip()
    lines = [ln for ln in BASE.splitlines() if ln.split("=")[0].strip() != key]
    return "\n".join(lines) + "\n" + line + "\n"


def keys(err: ConfigError) -> list[str]:
    return [key for key, _ in err.problems]


# --------------------------------------------------------------------------- the shipped files


def test_demo_conf_loads() -> None:
    config = load_config(CONF / "demo.toml", env={})
    assert config.daemon.mode == "embedded"
    assert config.store.kind == "sqlite"
    assert config.api.listen == ("127.0.0.1", 8080)
    assert [op.id for op in config.operators] == ["roshan", "etisalat", "mtn", "awcc", "salaam"]
    assert [op.system_id for op in config.operators] == [
        "smppd-roshan", "smppd-etisalat", "smppd-mtn", "smppd-awcc", "smppd-salaam"]
    assert [op.hosts for op in config.operators] == [
        [("127.0.0.1", 2775 + i), ("127.0.0.1", 12775 + i)] for i in range(5)]
    assert config.operator("mtn").mnc == ["01", "20"]
    assert config.operator("salaam").prefixes == ["9374"]
    assert config.total_binds == 9
    for op in config.operators:
        password = op.password_value()
        assert password and len(password) <= 8
        assert 100 <= op.tps <= 500 and 20 <= op.window <= 100 and 1 <= op.binds <= 2
    assert config.sqlite_path == Path("var/demo/smppd.sqlite")
    assert config.source_file == CONF / "demo.toml"


def test_example_conf_loads() -> None:
    config = load_config(CONF / "smppd.example.toml",
                         env={"ROSHAN_SMPP_PASSWORD": "pw", "ACME_WEBHOOK_SECRET": "s" * 16})
    assert config.daemon.mode == "distributed"
    assert config.redis is not None and config.nats is not None and config.vault is not None
    assert config.store.dsn is not None
    assert config.operator("roshan").password_value() == "pw"
    assert config.operator("etisalat").vault_path == "smpp/operators/etisalat"
    assert config.operator("etisalat").password_value() is None
    assert config.operator("mtn").vault_path == "smpp/legacy/mtn"
    assert config.operator("mtn").bind_plan == ["transmitter", "transmitter", "receiver"]
    assert config.operator("awcc").source_ton == 5
    roshan = config.operator("roshan")
    assert roshan.rule_for(0x45) == StatusRule(True, 2, 5.0)  # operator entry
    assert roshan.rule_for(0x08).transient is False  # operator override of a default
    assert roshan.rule_for(0x58) == StatusRule(True, 5, 1.0)  # inherited


def test_demo_matches_simulator_conf() -> None:
    sim = CONF / "simulator.toml"
    if not sim.exists():
        pytest.skip("conf/simulator.toml not written yet")
    accounts = {}
    for mno in tomllib.loads(sim.read_text())["mno"]:
        for account in mno["account"]:
            accounts[account["system_id"]] = (mno["port"], account)
    config = load_config(CONF / "demo.toml", env={})
    for op in config.operators:
        port, account = accounts[op.system_id]
        assert op.hosts[0] == ("127.0.0.1", port)
        assert op.password_value() in account.get("passwords", [account.get("password")])
        assert op.tps <= account["tps"] and op.binds <= account["max_binds"]


# --------------------------------------------------------------------------- resolution


def test_builtin_defaults_and_status_table(tmp_path: Path) -> None:
    op = load_config(write(tmp_path, BASE), env={}).operators[0]
    assert op.name == "roshan"
    assert (op.window, op.tps, op.binds, op.bind_type) == (10, 50, 1, "transceiver")
    assert op.enquire_link_interval == 30.0 and op.inactivity_timeout == 90.0
    assert op.status_table == DEFAULT_STATUS_TABLE
    for status in (Status.ESME_RTHROTTLED, Status.ESME_RMSGQFUL, Status.ESME_RSYSERR,
                   Status.ESME_RX_T_APPN):
        assert op.rule_for(status) == StatusRule(True, 5, 1.0)
    assert op.rule_for(Status.ESME_RINVDSTADR) == StatusRule(False, 0, 0.0)


def test_operator_over_defaults_over_builtin(tmp_path: Path) -> None:
    text = BASE.replace("[[operators]]", """
[defaults]
tps = 20
window = 7
long_message = "sar"
[defaults.status_table]
ESME_RINVMSGID = { transient = true, retries = 1, delay = 2.5 }

[[operators]]
tps = 99
""", 1)
    op = load_config(write(tmp_path, text), env={}).operators[0]
    assert (op.tps, op.window, op.long_message, op.response_timeout) == (99, 7, "sar", 30.0)
    assert op.rule_for(0x0C) == StatusRule(True, 1, 2.5)
    assert op.rule_for(0x58) == StatusRule(True, 5, 1.0)


def test_status_table_keys_hex_decimal_name(tmp_path: Path) -> None:
    text = BASE + """
[operators.status_table]
"0x45" = { transient = true }
"11" = { transient = true, retries = 3 }
ESME_RTHROTTLED = { transient = true, retries = 9, delay = 0.5 }
"""
    op = load_config(write(tmp_path, text), env={}).operators[0]
    assert op.rule_for(0x45) == StatusRule(True, 5, 1.0)
    assert op.rule_for(11) == StatusRule(True, 3, 1.0)
    assert op.rule_for(0x58) == StatusRule(True, 9, 0.5)


def test_ipv6_host(tmp_path: Path) -> None:
    text = BASE.replace('"127.0.0.1:2775"', '"[::1]:2775", "smsc.example:12775"')
    op = load_config(write(tmp_path, text), env={}).operators[0]
    assert op.hosts == [("::1", 2775), ("smsc.example", 12775)]
    assert op.primary == ("::1", 2775)


# --------------------------------------------------------------------------- validation rules


@pytest.mark.parametrize(("line", "key", "fragment"), [
    ("tps = 0", "operators.roshan.tps", "must be greater than 0"),
    ("tps = -5", "operators.roshan.tps", "must be greater than 0"),
    ("window = 0", "operators.roshan.window", "greater than or equal to 1"),
    ("binds = 0", "operators.roshan.binds", "greater than or equal to 1"),
    ("response_timeout = 0", "operators.roshan.response_timeout", "greater than 0"),
    ("enquire_link_interval = 90.0", "operators.roshan.enquire_link_interval",
     "must be greater than enquire_link_interval"),
    ("inactivity_timeout = 10", "operators.roshan.inactivity_timeout",
     "must be greater than enquire_link_interval"),
    ("reconnect_min = 100", "operators.roshan.reconnect_min", "must not exceed reconnect_max"),
    ('long_message = "split"', "operators.roshan.long_message", "'udh', 'sar' or 'payload'"),
    ('submit_resp_id = "octal"', "operators.roshan.submit_resp_id", "'decimal', 'hex' or 'auto'"),
    ('receipt_id = "base64"', "operators.roshan.receipt_id", "'decimal', 'hex' or 'auto'"),
    ('bind_type = "both"', "operators.roshan.bind_type", "transceiver"),
    ('system_type = "much-too-long-x"', "operators.roshan.system_type", "at most 12"),
    ("source_ton = 9", "operators.roshan.source_ton", '"auto" or a TON'),
    ("dest_npi = 2", "operators.roshan.dest_npi", "NPI"),
    ("default_data_coding = 256", "operators.roshan.default_data_coding", "255"),
    ('mcc = "41"', "operators.roshan.mcc", "3 digits"),
    ('mnc = ["4a"]', "operators.roshan.mnc[0]", "digits"),
    ('prefixes = ["+9379"]', "operators.roshan.prefixes[0]", "digits"),
    ('prefixes = ["93", "93x"]', "operators.roshan.prefixes[1]", "digits"),
    ("hosts = []", "operators.roshan.hosts", "must not be empty"),
    ('hosts = ["127.0.0.1"]', "operators.roshan.hosts[0]", "not host:port"),
    ('hosts = ["a:1", "b:70000"]', "operators.roshan.hosts[1]", "port must be 1..65535"),
    ('hosts = ["a:0"]', "operators.roshan.hosts[0]", "port must be 1..65535"),
    ('system_id = "a-system-id-that-is-long"', "operators.roshan.system_id", "at most 15"),
    ("tpss = 5", "operators.roshan.tpss", "unknown key (did you mean 'tps'?)"),
])
def test_operator_rule_names_key(tmp_path: Path, line: str, key: str, fragment: str) -> None:
    err = problems(tmp_path, with_op(line))
    assert keys(err) == [key], err.problems
    assert fragment in err.problems[0][1]
    assert f"{key}: " in str(err)


def test_error_str_format(tmp_path: Path) -> None:
    err = problems(tmp_path, BASE + "tps = 0\n")
    assert str(err) == f"{tmp_path / 'smppd.toml'}: operators.roshan.tps: must be greater than 0"
    assert err.key == "operators.roshan.tps"


def test_every_problem_reported_at_once(tmp_path: Path) -> None:
    text = BASE + 'tps = 0\nwindow = 0\nlong_message = "x"\n[daemon]\nmodee = "embedded"\n'
    err = problems(tmp_path, text)
    assert set(keys(err)) == {"operators.roshan.tps", "operators.roshan.window",
                              "operators.roshan.long_message", "daemon.modee"}
    assert len(str(err).splitlines()) == 4


def test_cross_field_and_field_errors_together(tmp_path: Path) -> None:
    # cross-field checks run only on valid fields; an invalid operator still reports both
    err = problems(tmp_path, BASE + "inactivity_timeout = 5\nreconnect_min = 99\n")
    assert keys(err) == ["operators.roshan.inactivity_timeout", "operators.roshan.reconnect_min"]


@pytest.mark.parametrize(("text", "key", "fragment"), [
    ("[daemon]\nmode = 'cluster'\n", "daemon.mode", "'embedded' or 'distributed'"),
    ("[daemon]\ndrain_timeout = 0\n", "daemon.drain_timeout", "greater than 0"),
    ("[daemon]\nstatedir = 'x'\n", "daemon.statedir", "did you mean 'state_dir'"),
    ("[api]\nlisten = 'localhost'\n", "api.listen", "not host:port"),
    ("[store]\nkind = 'mysql'\n", "store.kind", "'sqlite' or 'postgres'"),
    ("[store]\nkind = 'postgres'\n", "store.dsn", "required"),
    ("[store]\nkind = 'postgres'\ndsn = 'mysql://u:hunter2@x/db'\n", "store.dsn", "postgresql://"),
    ("[store]\nreceipt_hold_seconds = 0\n", "store.receipt_hold_seconds", "greater than 0"),
    ("[redis]\nurl = 'http://u:hunter2@x'\n", "redis.url", "redis://"),
    ("[nats]\nurl = 'nats://a:4222,http://u:hunter2@b'\n", "nats.url", "nats://"),
    ("[leases]\nredis_url = 'http://u:hunter2@x'\n", "leases.redis_url", "rediss://"),
    ("[routing]\ndsn = 'mysql://u:hunter2@x/db'\n", "routing.dsn", "postgres://"),
    ("[vault]\naddr = 'vault:8200'\nauth = 'token'\n", "vault.addr", "http"),
    ("[vault]\naddr = 'http://v'\n", "vault.role_id", "approle"),
    ("[vault]\naddr = 'http://v'\nauth = 'token'\npath_template = '{x}'\n",
     "vault.path_template", "{operator_id}"),
    ("[vault]\naddr = 'http://v'\nauth = 'kerberos'\n", "vault.auth", "'approle' or 'token'"),
    ("[operator]\nid = 'x'\n", "operator", "did you mean 'operators'"),
    ("[daemon]\nmode = 'distributed'\n", "store.kind", "postgres"),
])
def test_section_rule_names_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    err = problems(tmp_path, text + BASE)
    assert key in keys(err), err.problems
    message = dict(err.problems)[key]
    assert fragment in message
    assert "hunter2" not in str(err)


def test_distributed_needs_redis(tmp_path: Path) -> None:
    text = "[daemon]\nmode = 'distributed'\n[store]\nkind = 'postgres'\ndsn = 'postgresql://x/y'\n"
    err = problems(tmp_path, text + BASE)
    assert keys(err) == ["redis.url"]


def test_defaults_errors_name_defaults_once(tmp_path: Path) -> None:
    second = BASE.split("[[operators]]")[1].replace("roshan", "mtn").replace("9379", "9377")
    text = "[defaults]\ntps = 0\nwindow = 3\n" + BASE + "[[operators]]" + second
    err = problems(tmp_path, text)
    assert keys(err) == ["defaults.tps"]


def test_defaults_cross_rule_blames_the_operator_key(tmp_path: Path) -> None:
    # defaults are fine on their own; the operator's override breaks the rule
    err = problems(tmp_path, "[defaults]\ninactivity_timeout = 60\n" + BASE
                   + "enquire_link_interval = 70\n")
    assert keys(err) == ["operators.roshan.enquire_link_interval"]
    err = problems(tmp_path, "[defaults]\ninactivity_timeout = 20\n" + BASE)
    assert keys(err) == ["defaults.inactivity_timeout"]


def test_defaults_rejects_identity_keys(tmp_path: Path) -> None:
    err = problems(tmp_path, "[defaults]\nhosts = ['a:1']\ntsp = 3\n" + BASE)
    assert keys(err) == ["defaults.hosts", "defaults.tsp"]
    assert "[[operators]]" in err.problems[0][1]
    assert "did you mean 'tps'" in err.problems[1][1]


def test_status_table_errors(tmp_path: Path) -> None:
    text = BASE + """
[operators.status_table]
"0x58" = { transient = true, retries = -1 }
"0x14" = { transient = true, retrys = 1 }
"""
    err = problems(tmp_path, text)
    assert keys(err) == ["operators.roshan.status_table.0x58.retries",
                         "operators.roshan.status_table.0x14.retrys"]
    err = problems(tmp_path, BASE + '[operators.status_table]\n"busy" = { transient = true }\n')
    assert keys(err) == ["operators.roshan.status_table"]
    assert "'busy' is not a command_status" in err.problems[0][1]


def test_duplicate_operator_ids(tmp_path: Path) -> None:
    second = BASE.split("[[operators]]")[1].replace("9379", "9372")
    err = problems(tmp_path, BASE + "[[operators]]" + second)
    assert keys(err) == ["operators.roshan.id"]
    assert "duplicate" in err.problems[0][1]


def test_prefix_routed_to_two_operators(tmp_path: Path) -> None:
    second = BASE.split("[[operators]]")[1].replace("roshan", "awcc")
    err = problems(tmp_path, BASE + "[[operators]]" + second)
    assert err.problems == [("operators.awcc.prefixes",
                             "prefix 9379 is also routed to operator roshan")]


def test_bad_operator_id_uses_index(tmp_path: Path) -> None:
    err = problems(tmp_path, BASE.replace('id = "roshan"', 'id = "Roshan AF"') + "tps = 0\n")
    assert set(keys(err)) == {"operators[0].id", "operators[0].tps"}


def test_missing_keys_and_no_operators(tmp_path: Path) -> None:
    err = problems(tmp_path, '[[operators]]\nid = "x"\npassword = "p"\n')
    assert keys(err) == ["operators.x.hosts", "operators.x.system_id"]
    assert all(msg == "is required" for _, msg in err.problems)
    err = problems(tmp_path, "[api]\n")
    assert keys(err) == ["operators"]


@pytest.mark.parametrize(("extra", "fragment"), [
    ('password_env = "PW"\n', "found: password, password_env"),
    ('credentials = "vault"\n', "found: password, credentials"),
])
def test_exactly_one_credential_source(tmp_path: Path, extra: str, fragment: str) -> None:
    err = problems(tmp_path, BASE + extra, env={"PW": "x"})
    assert keys(err) == ["operators.roshan.password"]
    assert fragment in err.problems[0][1]


def test_no_credential_source(tmp_path: Path) -> None:
    err = problems(tmp_path, BASE.replace(f'password = "{SECRET}"', ""))
    assert "found: none" in err.problems[0][1]


def test_password_too_long_not_echoed(tmp_path: Path) -> None:
    err = problems(tmp_path, BASE.replace(SECRET, "longer-than-8"))
    assert err.problems == [("operators.roshan.password", "must be at most 8 characters")]
    assert "longer-than-8" not in str(err)


def test_vault_credentials_need_vault_section(tmp_path: Path) -> None:
    text = BASE.replace(f'password = "{SECRET}"', 'credentials = "vault"')
    err = problems(tmp_path, text)
    assert err.problems == [("operators.roshan.credentials", "needs a [vault] section")]
    err = problems(tmp_path, BASE.replace(f'password = "{SECRET}"', 'credentials = "file:x"'))
    assert keys(err) == ["operators.roshan.credentials"]


# --------------------------------------------------------------------------- environment


def test_password_env(tmp_path: Path) -> None:
    text = BASE.replace(f'password = "{SECRET}"', 'password_env = "ROSHAN_PW"')
    config = load_config(write(tmp_path, text), env={"ROSHAN_PW": SECRET})
    assert config.operators[0].password_value() == SECRET
    assert SECRET not in repr(config) and SECRET not in str(config.model_dump())


def test_password_env_missing_names_variable(tmp_path: Path) -> None:
    text = BASE.replace(f'password = "{SECRET}"', 'password_env = "ROSHAN_PW"')
    err = problems(tmp_path, text, env={})
    assert err.problems == [("operators.roshan.password_env",
                             "environment variable ROSHAN_PW is not set")]


def test_password_env_too_long_not_echoed(tmp_path: Path) -> None:
    text = BASE.replace(f'password = "{SECRET}"', 'password_env = "ROSHAN_PW"')
    err = problems(tmp_path, text, env={"ROSHAN_PW": "way-too-long-pw"})
    assert keys(err) == ["operators.roshan.password_env"]
    assert "way-too-long-pw" not in str(err)


def test_env_overrides(tmp_path: Path) -> None:
    env = {"SMPPD_API_LISTEN": "0.0.0.0:9999", "SMPPD_STORE_PATH": "/tmp/x.sqlite",
           "SMPPD_STATE_DIR": "/srv/state", "SMPPD_STORE_DSN": "postgresql://u:pw@h/db"}
    config = load_config(write(tmp_path, BASE), env=env)
    assert config.api.listen == ("0.0.0.0", 9999)
    assert config.store.path == Path("/tmp/x.sqlite")
    assert config.daemon.state_dir == Path("/srv/state")
    assert config.store.dsn is not None
    assert config.store.dsn.get_secret_value() == "postgresql://u:pw@h/db"
    assert "u:pw" not in repr(config)


def test_state_dir_override_moves_default_sqlite_path(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE), env={"SMPPD_STATE_DIR": "/srv/state"})
    assert config.sqlite_path == Path("/srv/state/smppd.sqlite")
    config = load_config(write(tmp_path, BASE), env={"SMPPD_STATE_DIR": ""})  # empty: ignored
    assert config.sqlite_path == Path("var/smppd.sqlite")


def test_bad_env_override_is_named(tmp_path: Path) -> None:
    err = problems(tmp_path, BASE, env={"SMPPD_API_LISTEN": "nowhere"})
    assert keys(err) == ["api.listen (from SMPPD_API_LISTEN)"]


def test_api_listen_port_zero_allowed(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE), env={"SMPPD_API_LISTEN": "127.0.0.1:0"})
    assert config.api.listen == ("127.0.0.1", 0)


# --------------------------------------------------------------------------- secrets


def test_password_never_in_repr_or_dump(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE), env={})
    op = config.operators[0]
    assert op.password_value() == SECRET
    for text in (repr(config), str(config), repr(op), str(op), str(config.model_dump()),
                 config.model_dump_json()):
        assert SECRET not in text


def test_password_not_in_errors_of_same_operator(tmp_path: Path) -> None:
    err = problems(tmp_path, BASE + "tps = 0\nwindow = 'x'\nsystem_type = 5\n")
    assert SECRET not in str(err) and SECRET not in repr(err.problems)


# --------------------------------------------------------------------------- files and the CLI


def test_toml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    err = problems(tmp_path, '[api]\nlisten = "127.0.0.1:8080"\ntps = = 3\n')
    assert err.key == ""
    assert "line 3, column" in str(err) and "invalid TOML" in str(err)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError) as info:
        load_config(tmp_path / "nope.toml")
    assert str(info.value) == f"{tmp_path / 'nope.toml'}: file not found"


def test_check_config_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_config_command(CONF / "demo.toml", env={}) == 0
    assert capsys.readouterr().out == f"{CONF / 'demo.toml'}: OK, 5 operators, 9 binds\n"
    path = write(tmp_path, BASE)
    assert check_config_command(path, env={}) == 0
    assert capsys.readouterr().out == f"{path}: OK, 1 operator, 1 bind\n"


def test_check_config_invalid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, BASE + "tps = 0\n")
    assert check_config_command(path, env={}) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == f"{path}: operators.roshan.tps: must be greater than 0\n"
    assert check_config_command(write(tmp_path, "[[[x"), env={}) == 1


def test_check_config_missing_or_unreadable(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert check_config_command(tmp_path / "nope.toml") == 2
    assert "file not found" in capsys.readouterr().err
    assert check_config_command(tmp_path) == 2  # a directory
    assert "cannot read" in capsys.readouterr().err
