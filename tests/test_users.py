"""Named operators (gatekeeper/users.py): the users file, its hashes and roles, the command that
writes its lines, and the config check that refuses a bad one in one line naming the key."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from certs import make_certs

from gatekeeper.errors import ConfigError
from gatekeeper.users import ROLES, allows, entry_line, hash_secret, load_users

REPO = Path(__file__).resolve().parents[1]
SECRET = "correct horse battery staple"


def users_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "users.yaml"
    path.write_text(text)
    return path


def test_a_hash_is_salted_per_entry_and_only_its_secret_matches(tmp_path: Path) -> None:
    one, two = hash_secret(SECRET), hash_secret(SECRET)
    assert one != two and SECRET not in one  # a salt of its own each time; never the secret
    path = users_file(tmp_path, f"maria: {{role: operator, hash: '{one}'}}\nali: {{role: viewer, hash: '{two}'}}\n")
    users = load_users(str(path))
    assert users.verify("maria", SECRET)[1] is None and users.verify("maria", SECRET)[0].role == "operator"  # type: ignore[union-attr]
    assert users.verify("ali", SECRET)[0].role == "viewer"  # type: ignore[union-attr]
    assert users.verify("maria", SECRET + "x")[1] == "bad_password"
    assert users.verify("maria", "")[1] == "bad_password"
    assert users.verify("nobody", SECRET) == (None, "unknown_user")
    # A remembered secret is one that was accepted: a wrong one after it is still wrong.
    assert users.verify("maria", SECRET[:-1])[1] == "bad_password"


def test_an_expired_credential_is_refused_from_its_date(tmp_path: Path) -> None:
    path = users_file(tmp_path, f"maria: {{role: admin, hash: '{hash_secret(SECRET)}', expires: 2027-03-31}}\n")
    users = load_users(str(path))
    before = dt.datetime(2027, 3, 30, 23, 59, tzinfo=dt.timezone.utc)
    after = dt.datetime(2027, 3, 31, 0, 0, tzinfo=dt.timezone.utc)
    assert users.verify("maria", SECRET, before)[1] is None
    assert users.verify("maria", SECRET, after)[1] == "expired"
    assert users.verify("maria", "wrong secret here", after)[1] == "bad_password"  # the secret is judged first


def test_roles_are_ordered() -> None:
    assert ROLES == ("viewer", "operator", "admin")
    assert [allows(r, "operator") for r in ROLES] == [False, True, True]
    assert [allows(r, "viewer") for r in ROLES] == [True, True, True]


GOOD = hash_secret(SECRET)
BAD_FILES = [
    ("not YAML", "maria: [", "http.users: {path}: not valid YAML"),
    ("empty", "", "http.users: {path}: expected a mapping of user name to {{role, hash}}"),
    ("a list", "- maria\n", "http.users: {path}: expected a mapping of user name"),
    ("unknown role", f"maria: {{role: boss, hash: '{GOOD}'}}", "http.users: {path}: maria.role: expected one of viewer, operator, admin, got 'boss'"),
    ("no hash", "maria: {role: admin}", "http.users: {path}: maria.hash: required key is missing"),
    ("a plain secret for a hash", f"maria: {{role: admin, hash: '{SECRET}'}}", "http.users: {path}: maria.hash: expected scrypt$N$r$p$SALT$KEY"),
    ("a hash cut short", f"maria: {{role: admin, hash: '{GOOD[:-20]}!'}}", "http.users: {path}: maria.hash: expected scrypt$N$r$p$SALT$KEY as printed by `gatekeeper users add`; N, r, p are integers and SALT, KEY base64"),
    ("a cost too high", "maria: {role: admin, hash: 'scrypt$1073741824$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='}", "maria.hash: expected scrypt$N$r$p$SALT$KEY as printed by `gatekeeper users add`; scrypt N from 1024 to 1048576, got 1073741824"),
    ("unknown key", f"maria: {{role: admin, hash: '{GOOD}', password: x}}", "http.users: {path}: maria.password: unknown key; expected one of expires, hash, role"),
    ("a bad date", f"maria: {{role: admin, hash: '{GOOD}', expires: soon}}", "http.users: {path}: maria.expires: expected a date such as 2027-03-31"),
    ("a bad name", f"'ma/ria': {{role: admin, hash: '{GOOD}'}}", "http.users: {path}: 'ma/ria': expected a user name of 1 to 64 of"),
]


@pytest.mark.parametrize(("what", "text", "message"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_a_bad_users_file_is_one_error_naming_the_entry_and_key(tmp_path: Path, what: str, text: str, message: str) -> None:
    path = users_file(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_users(str(path))
    assert message.format(path=path) in str(exc.value)
    assert "\n" not in str(exc.value) and SECRET not in str(exc.value)


def test_a_missing_users_file_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^http.users: .*nope.yaml: cannot read the users file: No such file"):
        load_users(str(tmp_path / "nope.yaml"))


def run(args: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gatekeeper.cli", *args], input=stdin, capture_output=True, text=True, cwd=REPO, timeout=60)


def test_users_add_prints_a_line_the_users_file_takes_reading_the_secret_from_stdin(tmp_path: Path) -> None:
    done = run(["users", "add", "maria", "--role", "operator", "--expires", "2099-01-01"], SECRET + "\n")
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.startswith("maria: {role: operator, hash: 'scrypt$") and SECRET not in line and "expires: '2099-01-01T00:00:00+00:00'" in line
    users = load_users(str(users_file(tmp_path, line + "\n")))
    assert users.verify("maria", SECRET)[1] is None and users.verify("maria", "another secret")[1] == "bad_password"


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["users", "add", "maria", "--role", "operator"], "short\n", "the secret: expected at least 12 characters, got 5"),
        (["users", "add", "maria", "--role", "operator"], "", "the secret: expected at least 12 characters, got 0"),
        (["users", "add", "ma/ria", "--role", "admin"], SECRET + "\n", "NAME: expected 1 to 64 of"),
        (["users", "add", "maria", "--role", "boss"], SECRET + "\n", "argument --role: invalid choice: 'boss'"),
        (["users", "add", "maria", "--role", "admin", "--expires", "soon"], SECRET + "\n", "expected a date such as 2027-03-31"),
    ],
    ids=["short secret", "no secret", "bad name", "unknown role", "bad date"],
)
def test_users_add_refuses_bad_input_in_one_line(args: list[str], stdin: str, message: str) -> None:
    done = run(args, stdin)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and message in done.stderr and "Traceback" not in done.stderr
    assert SECRET not in done.stderr


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("http: {{users: {users}}}\n", "http.users: {users}: maria.role: expected one of viewer, operator, admin, got 'boss'"),
        ("http: {{tls: {{cert: {tmp}/nope.pem}}}}\n", "http.tls.cert: {tmp}/nope.pem: no such file; expected a PEM file"),
        ("http: {{tls: {{cert: {users}}}}}\n", "http.tls.cert: cannot load {users}"),
        ("hooks: [{{type: mqtt, tls: {{enabled: true, ca: {tmp}/ca.pem}}}}]\n", "hooks[0].tls.ca: {tmp}/ca.pem: no such file; expected a PEM file"),
        ("hooks: [{{type: mqtt, commands: true, commands_per_user: true}}]\n", "an MQTT hook has commands_per_user: true but http.users is not set"),
    ],
    ids=["a bad users file", "a certificate that is not there", "a certificate that is no certificate", "a CA that is not there", "per-user commands without users"],
)
def test_check_config_refuses_what_start_up_would_in_one_line_naming_the_key(tmp_path: Path, config: str, message: str) -> None:
    users = users_file(tmp_path, f"maria: {{role: boss, hash: '{GOOD}'}}\n")
    path = tmp_path / "config.yaml"
    path.write_text(config.format(users=users, tmp=tmp_path))
    done = run(["--check-config", "--config", str(path)])
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and message.format(users=users, tmp=tmp_path) in errors[0], done.stderr
    assert "Traceback" not in done.stderr


def test_check_config_passes_a_good_users_file_and_certificate(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    users = users_file(tmp_path, f"maria: {{role: operator, hash: '{GOOD}'}}\n")
    path = tmp_path / "config.yaml"
    path.write_text(f"http: {{users: {users}, tls: {{cert: {certs.server_cert}, key: {certs.server_key}}}}}\n")
    done = run(["--check-config", "--config", str(path)])
    assert done.returncode == 0, done.stderr
    assert f"users: {users}" in done.stdout


def test_entry_line_never_takes_a_secret_of_several_lines() -> None:
    with pytest.raises(ValueError, match="one line"):
        entry_line("maria", "admin", SECRET + "\nsecond")
