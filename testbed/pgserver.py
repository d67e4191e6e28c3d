"""Start and stop a throw-away PostgreSQL server for the migration runner's tests and benchmark.

Plain module (no pytest imports) so that ``tests/migrate/conftest.py`` and
``bench/runner_bench.py`` share it.

The server:
- lives in a fresh temporary directory (data, unix socket, log, TLS files), on the memory file
  system /dev/shm where it has room (creating ~1000 files there is a tenth of the cost on disk);
- listens on a free TCP port on 127.0.0.1 only; the unix socket is in the temp directory;
- authenticates TCP clients with SCRAM passwords (so password handling is tested for real) and
  trusts the unix socket (used only by the admin helpers here);
- serves TLS with a certificate signed by a throw-away test CA (``ca_file``; SAN IP 127.0.0.1 and
  DNS localhost, so verify-full works) made with ``openssl`` when it is available; a second CA
  (``wrong_ca_file``) signed nothing;
- runs as an unprivileged account when the caller is root (PostgreSQL refuses to run as root):
  the ``postgres`` account if it exists, else ``nobody``;
- starts from a copy of initdb's output, which is made once per machine for the same binaries,
  options and account (a folder in the temp directory named by their hash): a copy of a cluster
  that never ran is what initdb would make again, in a tenth of its time (about 0.04 s against
  0.45 s here).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import sql

SUPERUSER = "postgres"
#: postmaster.pid's status line (0-based): "starting", "ready", "stopping" (PostgreSQL 10+).
PID_FILE_STATUS_LINE = 7


class PgUnavailableError(RuntimeError):
    """The PostgreSQL server binaries (or an account to run them) are not available."""


def find_bin_dir() -> Path:
    """Directory holding initdb/pg_ctl/postgres: $PG_BIN_DIR, else the newest Debian install."""
    override = os.environ.get("PG_BIN_DIR")
    candidates: list[Path] = []
    if override:
        candidates.append(Path(override))
    else:

        def version(p: Path) -> tuple[int, ...]:
            return tuple(int(x) for x in re.findall(r"\d+", p.parent.name)) or (0,)

        candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True))
        which = shutil.which("initdb")
        if which:
            candidates.append(Path(which).resolve().parent)
    for cand in candidates:
        if all((cand / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return cand
    raise PgUnavailableError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found under "
        "/usr/lib/postgresql/*/bin or $PG_BIN_DIR; install the Debian package 'postgresql'"
    )


def _server_account() -> tuple[int, int] | None:
    """(uid, gid) to run the server as, or None to run as the current (non-root) user."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise PgUnavailableError("running as root and neither a 'postgres' nor a 'nobody' account exists")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class PgServer:
    root: Path
    bin_dir: Path
    port: int
    account: tuple[int, int] | None
    cert_file: Path | None
    host: str = "127.0.0.1"
    _stopped: bool = field(default=False, repr=False)
    _postmaster: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def tls(self) -> bool:
        return self.cert_file is not None

    @property
    def ca_file(self) -> Path:
        """The CA that signed the server certificate (verify-full succeeds with it)."""
        return self.root / "test-ca.crt"

    @property
    def wrong_ca_file(self) -> Path:
        """A CA that signed nothing here (verify-full fails with it)."""
        return self.root / "wrong-ca.crt"

    def start_again(self) -> None:
        """Start the stopped server on the same port; returns when it accepts connections."""
        with self.log_file.open("ab") as log:
            self._postmaster = _popen_as(
                [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)], self.account, log
            )
        self._wait_ready()

    def shut_down(self) -> None:
        """Stop the server (fast: sessions are terminated, as in a restart or failover)."""
        self._signal_and_reap(signal.SIGINT)

    def restart(self) -> None:
        self.shut_down()
        self.start_again()

    def _wait_ready(self, timeout: float = 30) -> None:
        """What `pg_ctl start -w` checks (postmaster.pid's status line reads "ready"), every 5 ms
        instead of every 100 ms; a postmaster that exits instead (its port taken) fails at once."""
        proc = self._postmaster
        assert proc is not None
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            if proc.poll() is not None:
                raise RuntimeError(f"postgres exited {proc.returncode}: {self.log_file.read_text()[-2000:]}")
            with contextlib.suppress(FileNotFoundError):
                lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
                if len(lines) > PID_FILE_STATUS_LINE and lines[0] == str(proc.pid) and lines[PID_FILE_STATUS_LINE].strip() == "ready":
                    return
            time.sleep(0.005)
        self._signal_and_reap(signal.SIGQUIT)
        raise RuntimeError(f"postgres not ready after {timeout} s: {self.log_file.read_text()[-2000:]}")

    def _signal_and_reap(self, signum: int, timeout: float = 60) -> None:
        """SIGINT is a fast shutdown, SIGQUIT an immediate one; the postmaster exits after its
        sessions and workers have (what `pg_ctl stop -w` waits for, by polling)."""
        proc, self._postmaster = self._postmaster, None
        if proc is not None:
            proc.send_signal(signum)
            proc.wait(timeout)

    def admin(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        """Superuser connection over the unix socket (trust auth), autocommit."""
        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=SUPERUSER,
            dbname=dbname,
            autocommit=True,
            application_name="pgserver-admin",
        )

    def create_role_and_db(self, role: str, password: str, dbname: str) -> None:
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(dbname), sql.Identifier(role)))

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            self._signal_and_reap(signal.SIGQUIT, timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


def _popen_as(args: list[str], account: tuple[int, int] | None, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """The postmaster, as `pg_ctl start` runs it: as the server account, in a session of its own
    (a Ctrl-C meant for the tests does not reach it), its output appended to the log."""
    kwargs: dict[str, Any] = {}
    if account is not None:
        kwargs.update(user=account[0], group=account[1], extra_groups=[])
    return subprocess.Popen(
        args,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"},
        cwd="/",
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        **kwargs,
    )


def _run_as(args: list[str], account: tuple[int, int] | None, timeout: float = 60) -> None:
    kwargs: dict[str, Any] = {}
    if account is not None:
        kwargs.update(user=account[0], group=account[1], extra_groups=[])
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}
    proc = subprocess.run(
        args,
        env=env,
        cwd="/",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
        check=False,
        **kwargs,
    )
    if proc.returncode != 0:
        out = proc.stdout.decode(errors="replace").strip()
        raise RuntimeError(f"{Path(args[0]).name} exited {proc.returncode}: {out}")


def _openssl(*args: str) -> None:
    subprocess.run(
        ["openssl", *args], check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30
    )


def _make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A throw-away certificate authority (EC P-256: fast): (certificate, key)."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return cert, key


def _make_cert(directory: Path) -> Path | None:
    """A test CA, a server certificate it signed (SAN: IP 127.0.0.1, DNS localhost), and a second
    CA that signed nothing (the "wrong CA"). Returns the server certificate, or None without openssl."""
    if shutil.which("openssl") is None:
        return None
    ca_cert, ca_key = _make_ca(directory, "test-ca")
    _make_ca(directory, "wrong-ca")
    cert, key, csr = directory / "server.crt", directory / "server.key", directory / "server.csr"
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1",
    )  # fmt: skip
    extensions = directory / "server.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", "2", "-extfile", str(extensions),
    )  # fmt: skip
    return cert


#: initdb's options: the template's name hashes them.
INITDB_OPTIONS = (
    "-U", SUPERUSER, "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
    "--locale=C", "--no-sync", "--no-instructions",
)  # fmt: skip


def _template(bin_dir: Path, account: tuple[int, int] | None) -> Path:
    """initdb's output for these binaries, options and account, made once (under a file lock, in a
    folder renamed into place only when complete); never started, only copied."""
    binaries = [bin_dir / name for name in ("initdb", "postgres")]
    identity = [str(bin_dir), *INITDB_OPTIONS, str(account)] + [f"{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in binaries]
    key = hashlib.sha256("\0".join(identity).encode()).hexdigest()[:16]
    final = Path(tempfile.gettempdir()) / f"pgtest-initdb-{key}"
    data = final / "data"

    def complete() -> bool:
        return (data / "PG_VERSION").is_file() and (data / "global" / "pg_control").is_file()

    if complete():
        return data
    with (final.parent / f"{final.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if complete():
            return data
        shutil.rmtree(final, ignore_errors=True)  # a template someone cleaned up in part
        build = Path(tempfile.mkdtemp(prefix=f"{final.name}.", dir=final.parent))
        try:
            build.chmod(0o755)  # the server account must reach its folder
            if account is not None:
                os.chown(build, *account)
            _run_as([str(bin_dir / "initdb"), "-D", str(build / "data"), *INITDB_OPTIONS], account)
            build.rename(final)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
    return data


#: Servers live in memory where there is this much room (a server needs about 60 MB).
SHM, SHM_FREE_BYTES = Path("/dev/shm"), 1 << 30


def _server_parent() -> str | None:
    """/dev/shm when it is a writable folder with room, else None (the temp directory)."""
    try:
        stat = os.statvfs(SHM)
    except OSError:
        return None
    return str(SHM) if os.access(SHM, os.W_OK | os.X_OK) and stat.f_bavail * stat.f_frsize >= SHM_FREE_BYTES else None


def start_server(*, tls: bool = True) -> PgServer:
    """initdb + start a server in a fresh temporary directory. Caller must call ``stop()``."""
    bin_dir = find_bin_dir()
    account = _server_account()
    root = Path(tempfile.mkdtemp(prefix="pgtest-", dir=_server_parent()))
    try:
        # The server account must reach its files through the temp dir (mkdtemp makes it 0700).
        root.chmod(0o755)
        (root / "sock").mkdir()
        cert = _make_cert(root) if tls else None
        for name in ("test-ca.key", "wrong-ca.key"):
            with contextlib.suppress(FileNotFoundError):
                (root / name).unlink()  # nothing signs with them any more
        if account is not None:
            os.chown(root / "sock", *account)
            if cert is not None:
                os.chown(cert, *account)
                os.chown(root / "server.key", *account)
        if cert is not None:
            (root / "server.key").chmod(0o600)
        log = root / "server.log"
        log.touch()
        if account is not None:
            os.chown(log, *account)
            os.chown(root, *account)

        # cp -a keeps the owner (the server account) and the data folder's mode 0700.
        subprocess.run(["cp", "-a", str(_template(bin_dir, account)), str(root / "data")], check=True, timeout=60)
        conf = [
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{root / 'sock'}'",
            "max_connections = 60",
            "shared_buffers = 16MB",
            "fsync = off",
            "synchronous_commit = off",
            "full_page_writes = off",
            "password_encryption = 'scram-sha-256'",
            "log_min_messages = warning",
        ]
        if cert is not None:
            conf += [
                "ssl = on",
                f"ssl_cert_file = '{cert}'",
                f"ssl_key_file = '{root / 'server.key'}'",
            ]
        with (root / "data" / "postgresql.conf").open("a") as fh:
            fh.write("\n".join(conf) + "\n")

        last_error: Exception | None = None
        for _ in range(3):  # a free port can be taken between probing and binding
            server = PgServer(root=root, bin_dir=bin_dir, port=free_port(), account=account, cert_file=cert)
            try:
                server.start_again()
            except RuntimeError as exc:
                last_error = exc
                continue
            return server
        raise RuntimeError(f"PostgreSQL did not start: {last_error}")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
