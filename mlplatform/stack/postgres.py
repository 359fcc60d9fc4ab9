"""The stack's PostgreSQL: one cluster under ``$MLPLATFORM_HOME/stack/postgres``.

Uses the server binaries of the operating system (Debian: ``apt-get install postgresql``,
found under ``/usr/lib/postgresql/<version>/bin``; elsewhere on PATH, or ``MLPLATFORM_PG_BINDIR``).
PostgreSQL refuses to run as root, so as root the cluster belongs to, and runs as, the
``postgres`` user (via ``runuser``). It listens on TCP only, with password authentication
(scram-sha-256); the password is generated at ``initdb`` and kept in ``password`` (mode 600).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from pydantic import SecretStr

from mlplatform.stack.processes import StackError

PASSWORD_FILE = "password"


def find_bindir() -> Path:
    """Folder of ``initdb``/``pg_ctl``: $MLPLATFORM_PG_BINDIR, Debian's newest, or PATH."""
    configured = os.environ.get("MLPLATFORM_PG_BINDIR")
    if configured:
        return Path(configured)
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parts[-3].split(".")],
    )
    if debian:
        return Path(debian[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise StackError(
        "PostgreSQL server binaries not found (initdb): install them, e.g. "
        "`apt-get install -y postgresql`, or set MLPLATFORM_PG_BINDIR"
    )


class Cluster:
    """A PostgreSQL cluster in ``directory`` (``data/``, ``postgres.log``, ``password``)."""

    def __init__(
        self, directory: Path, host: str, port: int, user: str, listen: str | None = None
    ) -> None:
        """``host``: where clients connect; ``listen``: the bind address (default ``host``)."""
        self.directory = directory
        self.data = directory / "data"
        self.log = directory / "postgres.log"
        self.host = host
        self.listen = listen or host
        self.port = port
        self.user = user
        self.as_root = os.geteuid() == 0

    # -- running the tools --------------------------------------------------------------------

    def _prefix(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if self.as_root else []

    def _tool(
        self, tool: str, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [*self._prefix(), str(find_bindir() / tool), *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise StackError(
                f"postgres: {tool} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )
        return result

    # -- state --------------------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").is_file()

    @property
    def password(self) -> SecretStr:
        return SecretStr((self.directory / PASSWORD_FILE).read_text(encoding="utf-8").strip())

    def pid(self) -> int | None:
        """The postmaster's pid from ``postmaster.pid`` (None when not running)."""
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def running(self) -> bool:
        return (
            self.initialized
            and self._tool("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0
        )

    def ready(self) -> bool:
        """Accepting connections (``pg_isready``)."""
        result = self._tool(
            "pg_isready", "-h", self.host, "-p", str(self.port), "-t", "3", check=False
        )
        return result.returncode == 0

    # -- lifecycle ----------------------------------------------------------------------------

    def init(self) -> None:
        """``initdb`` once: a superuser ``user`` with a generated password, UTF-8."""
        if self.initialized:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        password_file = self.directory / PASSWORD_FILE
        password_file.write_text(secrets.token_hex(16) + "\n", encoding="utf-8")
        password_file.chmod(0o600)
        if self.as_root:
            owner = self._postgres_user()
            for path in (self.directory, password_file):
                os.chown(path, owner.pw_uid, owner.pw_gid)
            self.directory.chmod(0o700)
            probe = subprocess.run([*self._prefix(), "test", "-w", str(self.directory)])
            if probe.returncode != 0:
                raise StackError(
                    f"the postgres user cannot reach {self.directory}: make its parent folders "
                    "traversable (chmod o+x) or choose another MLPLATFORM_HOME"
                )
        self._tool(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            self.user,
            f"--pwfile={password_file}",
            "--auth-host=scram-sha-256",
            "--auth-local=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-instructions",
        )

    def start(self, timeout: int = 60) -> None:
        """Start the server (TCP on host:port only) and wait until it accepts connections."""
        listen = "*" if self.listen in ("0.0.0.0", "", "*") else self.listen
        options = f"-p {self.port} -c listen_addresses='{listen}' -c unix_socket_directories=''"
        result = self._tool(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            str(timeout),
            "start",
            timeout=timeout + 30,
            check=False,
        )
        if result.returncode != 0:
            tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise StackError(
                f"postgres did not start on {self.host}:{self.port}:\n{result.stdout}"
                f"{result.stderr}\nlog tail ({self.log}):\n{tail}"
            )

    def stop(self, timeout: int = 60) -> bool:
        """Fast shutdown (open sessions are ended); False if it was not running."""
        if not self.running():
            return False
        self._tool(
            "pg_ctl",
            "-D",
            str(self.data),
            "-m",
            "fast",
            "-w",
            "-t",
            str(timeout),
            "stop",
            timeout=timeout + 30,
        )
        return True

    def create_databases(self, names: Iterable[str]) -> list[str]:
        """Create the databases that do not exist yet; returns the ones created."""
        import psycopg2

        conn = psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password.get_secret_value(),
            dbname="postgres",
            connect_timeout=10,
        )
        conn.autocommit = True
        created = []
        try:
            with conn.cursor() as cur:
                for name in names:
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                    if cur.fetchone() is None:
                        cur.execute(f'CREATE DATABASE "{name}"')
                        created.append(name)
        finally:
            conn.close()
        return created

    @staticmethod
    def _postgres_user() -> pwd.struct_passwd:
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise StackError(
                "running as root, but there is no `postgres` user to run PostgreSQL as "
                "(Debian's postgresql package creates it)"
            ) from None
