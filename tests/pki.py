"""Unusual certificates for the hostile-peer tests, minted with the real openssl in a given directory.

bootstrap.sh only makes good identities; these are the ones a server must refuse although they sit
in its trusted set: expired, not yet valid, the wrong purpose, and a leaf signed by a trusted CA.
`openssl ca` is used because, unlike `openssl req -x509` in OpenSSL 3.0, it takes explicit
validity dates (-startdate/-enddate, YYYYMMDDHHMMSSZ).
"""

import datetime
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple, Optional

LEAF_EXTENSIONS = """\
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = {eku}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""

CA_EXTENSIONS = """\
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""

# A throwaway `openssl ca` setup: its database and serial live in the same directory.
CA_CONFIG = """\
[ca]
default_ca = demo

[demo]
dir = {dir}
database = $dir/{name}.index.txt
new_certs_dir = $dir/{name}.issued
rand_serial = yes
default_md = sha256
policy = any_name
email_in_dn = no
unique_subject = no
copy_extensions = none
x509_extensions = ext

[any_name]
commonName = supplied

[req]
prompt = no
utf8 = yes
string_mask = utf8only
distinguished_name = dn

[dn]
CN = {cn}

[ext]
{extensions}"""


class Identity(NamedTuple):
    """A certificate and its private key, both PEM."""

    cert: Path
    key: Path


class OpenSSLError(Exception):
    """openssl failed; the message holds the command and its output."""


def openssl(*args: str, cwd: Path) -> None:
    """Run openssl silently; on failure raise with the command and what it printed."""
    exe = shutil.which("openssl")
    if exe is None:
        raise OpenSSLError("openssl not found; install it (apt-get install openssl)")
    result = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=30,
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise OpenSSLError(f"openssl {' '.join(args)} failed:\n{result.stdout}{result.stderr}")


def asn1_time(moment: datetime.datetime) -> str:
    """A UTC datetime in the YYYYMMDDHHMMSSZ form `openssl ca -startdate/-enddate` accepts."""
    return moment.astimezone(datetime.timezone.utc).strftime("%Y%m%d%H%M%SZ")


def days_from_now(days: float) -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days)


def ec_key(path: Path) -> Path:
    """An EC P-256 private key (named curve), mode 0600, as bootstrap.sh makes them."""
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-pkeyopt", "ec_param_enc:named_curve", "-out", path.name, cwd=path.parent)
    path.chmod(0o600)
    return path


def mint(directory: Path, name: str, cn: str, extensions: str,
         not_before: datetime.datetime, not_after: datetime.datetime,
         issuer: Optional[Identity] = None) -> Identity:
    """Key, CSR and certificate <name>-cert.pem/<name>-key.pem in directory: self-signed unless an
    issuer is given, with exactly the validity dates and extensions asked for."""
    directory = Path(directory)
    config = directory / f"{name}.cnf"
    config.write_text(CA_CONFIG.format(dir=directory, name=name, cn=cn, extensions=extensions))
    (directory / f"{name}.index.txt").write_text("")
    (directory / f"{name}.issued").mkdir(exist_ok=True)  # openssl ca files a copy by serial here
    key = ec_key(directory / f"{name}-key.pem")
    csr = directory / f"{name}.csr"
    cert = directory / f"{name}-cert.pem"
    openssl("req", "-new", "-config", config.name, "-key", key.name, "-out", csr.name,
            cwd=directory)
    signer = ["-selfsign", "-keyfile", key.name] if issuer is None else \
        ["-cert", str(issuer.cert), "-keyfile", str(issuer.key)]
    openssl("ca", "-batch", "-notext", "-config", config.name, *signer, "-in", csr.name,
            "-out", cert.name, "-startdate", asn1_time(not_before), "-enddate", asn1_time(not_after),
            "-extensions", "ext", "-md", "sha256", cwd=directory)
    cert.chmod(0o644)
    return Identity(cert, key)


def client_extensions(eku: str = "clientAuth") -> str:
    return LEAF_EXTENSIONS.format(eku=eku)


def expired_client(directory: Path, cn: str = "expired") -> Identity:
    """A self-signed clientAuth certificate whose validity ended yesterday."""
    return mint(directory, "expired", cn, client_extensions(), days_from_now(-30), days_from_now(-1))


def not_yet_valid_client(directory: Path, cn: str = "future") -> Identity:
    """A self-signed clientAuth certificate whose validity starts tomorrow."""
    return mint(directory, "future", cn, client_extensions(), days_from_now(1), days_from_now(30))


def wrong_purpose_client(directory: Path, cn: str = "serverpurpose") -> Identity:
    """A currently valid self-signed certificate for servers only (EKU serverAuth)."""
    return mint(directory, "serverpurpose", cn, client_extensions("serverAuth"),
                days_from_now(-1), days_from_now(30))


def good_client(directory: Path, cn: str = "good") -> Identity:
    """A currently valid self-signed clientAuth certificate, minted the same way as the bad ones."""
    return mint(directory, "good", cn, client_extensions(), days_from_now(-1), days_from_now(30))


def certificate_authority(directory: Path, cn: str = "demo CA") -> Identity:
    """A small self-signed CA (CA:TRUE, keyCertSign) that can sign client certificates."""
    return mint(directory, "ca", cn, CA_EXTENSIONS, days_from_now(-1), days_from_now(30))


def ca_signed_client(directory: Path, ca: Identity, cn: str = "casigned") -> Identity:
    """A currently valid clientAuth certificate signed by `ca` (so not self-signed)."""
    return mint(directory, "casigned", cn, client_extensions(), days_from_now(-1),
                days_from_now(30), issuer=ca)
