"""The production topology of deploy/, started as the systemd units describe it, behind a real
nginx rendered from deploy/nginx/countersign.conf.template with a self-signed certificate.

Each process runs the command of its unit's ExecStart, with the install paths of the unit
replaced by this checkout's virtualenv and its ports by free ones: what the test runs is what
the units say.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from tests.plugins.processes import BASE_DIR, PYTHON, ServerProcess, free_port

DEPLOY = BASE_DIR / "deploy"
UNITS = DEPLOY / "systemd"
INSTALL = "/opt/countersign"


def exec_start(unit: str) -> list[list[str]]:
    """The ExecStart commands of a unit file, split as systemd splits them."""
    text = (UNITS / unit).read_text()
    return [shlex.split(m) for m in re.findall(r"^ExecStart=(.+)$", text, re.MULTILINE)]


def localize(argv: list[str], **ports: str) -> list[str]:
    """A unit's command for this checkout: its virtualenv's programs by `python -m`, its ports
    (`%i`, `--port N`) by the ones given."""
    programs = {
        f"{INSTALL}/.venv/bin/python": [PYTHON],
        f"{INSTALL}/.venv/bin/daphne": [PYTHON, "-m", "daphne"],
        f"{INSTALL}/.venv/bin/celery": [PYTHON, "-m", "celery"],
    }
    out = list(programs.get(argv[0], [argv[0]]))
    args = argv[1:]
    for i, arg in enumerate(args):
        if arg == "%i":
            arg = ports["instance"]
        elif i > 0 and args[i - 1] == "--port" and "port" in ports:
            arg = ports["port"]
        elif arg.startswith("/var/lib/countersign/"):
            arg = ports["var_dir"] + arg.removeprefix("/var/lib/countersign")
        out.append(arg)
    return out


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1, and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


@dataclass
class Nginx:
    directory: Path
    port: int
    web_ports: list[int]
    relay_port: int
    cert: Path
    key: Path
    process: ServerProcess | None = None
    http_port: int = field(default_factory=free_port)
    gateway_port: int = field(default_factory=free_port)

    def render(self) -> Path:
        """deploy/'s template, filled as the nginx image's entrypoint would, inside a minimal
        main configuration that runs unprivileged in `directory`."""
        template = Template((DEPLOY / "nginx" / "countersign.conf.template").read_text())
        site = template.safe_substitute(
            COUNTERSIGN_SERVER_NAME="localhost",
            COUNTERSIGN_LISTEN=f"127.0.0.1:{self.port}",
            COUNTERSIGN_HTTP_LISTEN=f"127.0.0.1:{self.http_port}",
            COUNTERSIGN_TLS_CERT=str(self.cert),
            COUNTERSIGN_TLS_KEY=str(self.key),
            COUNTERSIGN_WEB_UPSTREAMS=" ".join(f"server 127.0.0.1:{p};" for p in self.web_ports),
            COUNTERSIGN_RELAY_UPSTREAM=f"127.0.0.1:{self.relay_port}",
            COUNTERSIGN_GATEWAY_UPSTREAM=f"127.0.0.1:{self.gateway_port}",
            COUNTERSIGN_STATIC_ROOT=str(BASE_DIR / "staticfiles"),
        )
        assert "${COUNTERSIGN_" not in site, "a placeholder of the template was left unfilled"
        (self.directory / "countersign.conf").write_text(site)
        user = "user root;\n" if os.geteuid() == 0 else ""
        temp = "\n".join(
            f"    {name}_temp_path {self.directory / name};"
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        main = f"""{user}worker_processes 1;
pid {self.directory / "nginx.pid"};
error_log {self.directory / "error.log"} info;
events {{ worker_connections 1024; }}
http {{
    access_log {self.directory / "access.log"};
{temp}
    include /etc/nginx/mime.types;
    include {self.directory / "countersign.conf"};
}}
"""
        conf = self.directory / "nginx.conf"
        conf.write_text(main)
        return conf

    def start(self) -> Nginx:
        binary = nginx_binary()
        assert binary, "nginx is not installed"
        conf = self.render()
        check = subprocess.run(
            [binary, "-t", "-p", str(self.directory), "-c", str(conf)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stderr
        self.process = ServerProcess(
            [binary, "-p", str(self.directory), "-c", str(conf), "-g", "daemon off;"], port=self.port, name="nginx"
        ).start()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def log(self) -> str:
        parts = []
        for name in ("error.log", "access.log"):
            path = self.directory / name
            if path.exists():
                parts.append(f"--- nginx {name}\n{path.read_text()[-4000:]}")
        return "\n".join(parts)
