#!/usr/bin/env bash
# bootstrap.sh: mint self-signed mutual-TLS demo identities into server/ and client/.
# Needs only bash and openssl (OpenSSL 1.1.1+, 3.x, or LibreSSL); see ./bootstrap.sh --help.
set -euo pipefail
# Paranoid umask: we are about to create private keys, and no one else may ever read them.
umask 077

readonly PROG="bootstrap"
readonly DEFAULT_DAYS=365
readonly MAX_DAYS=36500
readonly NAME_PATTERN='^[a-z0-9._-]{1,64}$'
readonly CN_PATTERN='^[A-Za-z0-9 ._@-]{1,64}$'

KEY_TYPE="ec"
DAYS="$DEFAULT_DAYS"
SANS=()
CLIENT_CN="client"
FORCE=0
LEGACY=0
ARGS=()
WORK_DIR=""

print_usage() {
  cat <<EOF
Usage: ./bootstrap.sh [--key-type ec|rsa|ed25519] [--days N] [--san NAME]... [--client-cn CN] [--force]
       ./bootstrap.sh add-client NAME [--key-type ec|rsa|ed25519] [--days N] [--force]
       ./bootstrap.sh revoke-client NAME
       ./bootstrap.sh list
       ./bootstrap.sh export-p12 NAME [--legacy]

Self-signed demo identities for mutual TLS: not for production.

  \$ ./bootstrap.sh
    Mints a server identity (CN=localhost; DNS:localhost, IP:127.0.0.1, IP:::1) and a client
    identity (CN=client), EC P-256 keys, valid $DEFAULT_DAYS days, into server/ and client/.
    Existing identities are kept; add --force to replace them.

  \$ ./bootstrap.sh --key-type rsa --days 30
    The same with RSA 3072 keys (or --key-type ed25519), valid 30 days (default $DEFAULT_DAYS).

  \$ ./bootstrap.sh --san myhost.example --san 192.168.1.10 --client-cn alice
    Adds DNS:myhost.example and IP:192.168.1.10 to the server certificate; client CN=alice.

  \$ ./bootstrap.sh add-client bob
    Mints another client identity into client/bob/ and trusts it in server/clients/bob.pem.
    NAME is 1-64 of a-z 0-9 . _ - ("client" is the default identity's name).

  \$ ./bootstrap.sh revoke-client bob
    Moves bob's certificate from the server's trusted set to server/revoked/bob.pem
    ("client" revokes the default identity); then reload the server with kill -HUP <pid>.

  \$ ./bootstrap.sh list
    Prints ROLE, NAME, KEY, SHA256 fingerprint, EXPIRES and TRUSTED for every identity.

  \$ P12_PASSWORD=secret ./bootstrap.sh export-p12 bob --legacy
    Writes client/bob.p12 (client/client.p12 for "client") for a browser or keychain;
    --legacy uses SHA1/3DES encryption that macOS Keychain can import.
    Without P12_PASSWORD the password is asked for on the terminal; it may not be empty.
EOF
}

die() {
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  exit 1
}

die_usage() {
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  printf "Run './bootstrap.sh --help' for usage.\n" >&2
  exit 2
}

say() {
  printf '%s: %s\n' "$PROG" "$*"
}

require_openssl() {
  command -v openssl >/dev/null 2>&1 ||
    die "openssl not found; install it (Debian/Ubuntu: apt install openssl; macOS: brew install openssl)"
}

# Run openssl silently; on failure show the command and everything it printed (dehydrated's _openssl).
run_openssl() {
  local out
  if ! out="$(openssl "$@" 2>&1)"; then
    printf '%s: error: command failed: openssl %s\n%s\n' "$PROG" "$*" "$out" >&2
    exit 1
  fi
}

# Like run_openssl, but print openssl's standard output for the caller to capture.
read_openssl() {
  local out err_file
  err_file="$(mktemp)"
  if ! out="$(openssl "$@" 2>"$err_file")"; then
    printf '%s: error: command failed: openssl %s\n%s\n' "$PROG" "$*" "$(cat "$err_file")" >&2
    rm -f "$err_file"
    exit 1
  fi
  rm -f "$err_file"
  printf '%s\n' "$out"
}

enter_project_dir() {
  case "$0" in
    */*) cd "${0%/*}" ;;
  esac
}

check_key_type() {
  case "$1" in
    ec | rsa | ed25519) ;;
    *) die_usage "--key-type: '$1' is not one of ec, rsa, ed25519" ;;
  esac
}

check_days() {
  if ! [[ "$1" =~ ^[1-9][0-9]{0,4}$ ]] || ((10#$1 > MAX_DAYS)); then
    die_usage "--days: '$1' is not a positive whole number of days (1-$MAX_DAYS)"
  fi
}

check_name() {
  local name="$1"
  [[ "$name" =~ $NAME_PATTERN && "$name" != "." && "$name" != ".." ]] ||
    die_usage "NAME '$name' is not allowed: use 1-64 of a-z 0-9 . _ - (not '.' or '..')"
}

check_cn() {
  [[ "$1" =~ $CN_PATTERN ]] ||
    die_usage "--client-cn: '$1' is not allowed: use 1-64 of A-Z a-z 0-9 space . _ @ -"
}

is_ipv4() {
  local IFS=. octet
  [[ "$1" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || return 1
  for octet in $1; do
    ((10#$octet <= 255)) || return 1
  done
}

is_ipv6() {
  [[ "$1" == *:* && "$1" =~ ^[0-9A-Fa-f:.]+$ ]]
}

is_dns_name() {
  local label='[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?'
  [[ ${#1} -le 253 && "$1" =~ ^(\*\.)?$label(\.$label)*$ ]]
}

# Turn a --san value into an OpenSSL subjectAltName entry (IP: for addresses, DNS: otherwise).
san_entry() {
  if is_ipv4 "$1" || is_ipv6 "$1"; then
    printf 'IP:%s' "$1"
  elif is_dns_name "$1"; then
    printf 'DNS:%s' "$1"
  else
    die_usage "--san: '$1' is neither a DNS name nor an IP address"
  fi
}

# Parse options into globals; $1 lists the options this command accepts, positionals go to ARGS.
parse_options() {
  local allowed=" $1 " opt value
  shift
  while (($# > 0)); do
    opt="$1"
    value=""
    shift
    case "$opt" in
      --*=*)
        value="${opt#*=}"
        opt="${opt%%=*}"
        ;;
      --key-type | --days | --san | --client-cn)
        (($# > 0)) || die_usage "$opt needs a value"
        value="$1"
        shift
        ;;
    esac
    case "$opt" in
      -h | --help)
        print_usage
        exit 0
        ;;
      --) ARGS+=("$@") && break ;;
      -*) [[ "$allowed" == *" $opt "* ]] || die_usage "unknown option $opt" ;;
      *)
        ARGS+=("$opt")
        continue
        ;;
    esac
    case "$opt" in
      --key-type) check_key_type "$value" && KEY_TYPE="$value" ;;
      --days) check_days "$value" && DAYS="$((10#$value))" ;;
      --san) SANS+=("$(san_entry "$value")") ;;
      --client-cn) check_cn "$value" && CLIENT_CN="$value" ;;
      --force) FORCE=1 ;;
      --legacy) LEGACY=1 ;;
    esac
  done
}

cleanup_work_dir() {
  if [[ -n "$WORK_DIR" ]]; then
    rm -rf "$WORK_DIR"
  fi
}

# Build in a temp dir beside the final files, so `mv` is a rename and a failed run leaves nothing.
make_work_dir() {
  WORK_DIR="$(mktemp -d "$PWD/.bootstrap.XXXXXX")"
  trap cleanup_work_dir EXIT
  # bash skips the EXIT trap when killed by a signal it does not trap; exit instead.
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

generate_key() {
  local out="$2"
  case "$1" in
    ec) run_openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
      -pkeyopt ec_param_enc:named_curve -out "$out" ;;
    rsa) run_openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out "$out" ;;
    ed25519) run_openssl genpkey -algorithm ED25519 -out "$out" ;;
  esac
}

# Write an openssl req config: a role-specific certificate profile (server or client).
write_config() {
  local out="$1" cn="$2" eku="$3" san="$4"
  {
    printf '[req]\nprompt = no\nutf8 = yes\nstring_mask = utf8only\n'
    printf 'distinguished_name = dn\nx509_extensions = ext\n\n'
    printf '[dn]\nCN = %s\n\n' "$cn"
    printf '[ext]\n'
    printf 'basicConstraints = critical,CA:FALSE\n'
    printf 'keyUsage = critical,digitalSignature\n'
    printf 'extendedKeyUsage = %s\n' "$eku"
    printf 'subjectKeyIdentifier = hash\n'
    # "always": OpenSSL 3 silently omits a plain "keyid" AKID from self-signed certificates.
    printf 'authorityKeyIdentifier = keyid:always\n'
    if [[ -n "$san" ]]; then
      printf 'subjectAltName = %s\n' "$san"
    fi
  } >"$out"
}

# Mint a key and a self-signed certificate: <prefix>-key.pem and <prefix>-cert.pem.
mint_identity() {
  local prefix="$1" cn="$2" eku="$3" san="${4:-}" serial digest=()
  generate_key "$KEY_TYPE" "$prefix-key.pem"
  write_config "$prefix.cnf" "$cn" "$eku" "$san"
  serial="0x$(read_openssl rand -hex 16)"
  # Ed25519 signs the whole message itself and takes no digest option.
  [[ "$KEY_TYPE" == "ed25519" ]] || digest=(-sha256)
  run_openssl req -x509 -new -key "$prefix-key.pem" -config "$prefix.cnf" -days "$DAYS" \
    -set_serial "$serial" ${digest[@]+"${digest[@]}"} -out "$prefix-cert.pem"
  chmod 0600 "$prefix-key.pem"
  chmod 0644 "$prefix-cert.pem"
}

key_label() {
  case "$KEY_TYPE" in
    ec) printf 'EC P-256' ;;
    rsa) printf 'RSA 3072' ;;
    ed25519) printf 'Ed25519' ;;
  esac
}

# tr, not ${x,,}: macOS still ships bash 3.2.
to_lower() {
  printf '%s' "$1" | tr '[:upper:]' '[:lower:]'
}

server_san() {
  local entries=("DNS:localhost" "IP:127.0.0.1" "IP:::1") entry known joined
  for entry in ${SANS[@]+"${SANS[@]}"}; do
    for known in "${entries[@]}"; do
      [[ "$(to_lower "$entry")" == "$(to_lower "$known")" ]] && continue 2
    done
    entries+=("$entry")
  done
  joined="$(printf '%s, ' "${entries[@]}")"
  printf '%s' "${joined%, }"
}

# Copy or move a file into place with an explicit mode (umask 077 would make certs private).
install_file() {
  local src="$1" dest="$2" mode="$3"
  chmod "$mode" "$src"
  mv -f "$src" "$dest"
}

make_dir() {
  [[ -d "$1" ]] || mkdir -m "$2" "$1"
}

existing_default_files() {
  local f
  for f in server/server-cert.pem server/server-key.pem client/client-cert.pem client/client-key.pem; do
    [[ -e "$f" ]] && printf '%s\n' "$f"
  done
  return 0
}

cmd_default() {
  parse_options "--key-type --days --san --client-cn --force" "$@"
  ((${#ARGS[@]} == 0)) || die_usage "unexpected argument '${ARGS[0]}' (subcommands: add-client, revoke-client, list, export-p12)"
  local existing=() name
  while IFS= read -r name; do existing+=("$name"); done < <(existing_default_files)
  if ((FORCE == 0 && ${#existing[@]} == 4)); then
    say "identities already exist (${existing[*]}); keeping them, use --force to replace them"
    return 0
  fi
  if ((FORCE == 0 && ${#existing[@]} > 0)); then
    die "incomplete identities: only ${existing[*]} exist; use --force to replace them all"
  fi
  make_work_dir
  mint_identity "$WORK_DIR/server" localhost serverAuth "$(server_san)"
  mint_identity "$WORK_DIR/client" "$CLIENT_CN" clientAuth
  install_default
  print_default_summary
}

install_default() {
  local dir
  make_dir server 0755
  make_dir client 0755
  cp "$WORK_DIR/server-cert.pem" "$WORK_DIR/server-cert-copy.pem"
  cp "$WORK_DIR/client-cert.pem" "$WORK_DIR/client-cert-copy.pem"
  # Clients made by add-client must trust the new server certificate too.
  for dir in client/*/; do
    [[ -f "$dir/server-cert.pem" ]] || continue
    cp "$WORK_DIR/server-cert.pem" "$WORK_DIR/copy.pem"
    install_file "$WORK_DIR/copy.pem" "$dir/server-cert.pem" 0644
  done
  install_file "$WORK_DIR/server-key.pem" server/server-key.pem 0600
  install_file "$WORK_DIR/server-cert.pem" server/server-cert.pem 0644
  install_file "$WORK_DIR/client-cert-copy.pem" server/client-cert.pem 0644
  install_file "$WORK_DIR/client-key.pem" client/client-key.pem 0600
  install_file "$WORK_DIR/client-cert.pem" client/client-cert.pem 0644
  install_file "$WORK_DIR/server-cert-copy.pem" client/server-cert.pem 0644
}

print_default_summary() {
  cat <<EOF
$PROG: wrote $(key_label) identities, valid $DAYS days (self-signed, for demos only):
  server/server-cert.pem   server certificate (CN=localhost; $(server_san))
  server/server-key.pem    server private key (stays on the server)
  server/client-cert.pem   client certificate the server trusts
  client/client-cert.pem   client certificate (CN=$CLIENT_CN)
  client/client-key.pem    client private key (stays on the client)
  client/server-cert.pem   server certificate the client trusts

Start the server:   cd server && python3 webserver.py
Then, from client/: curl --cacert server-cert.pem --cert client-cert.pem --key client-key.pem https://localhost:4443
EOF
}

require_server_identity() {
  [[ -f server/server-cert.pem && -f server/server-key.pem ]] ||
    die "no server identity in server/; run ./bootstrap.sh first"
}

cert_subject_cn() {
  local subject line
  subject="$(read_openssl x509 -noout -subject -nameopt multiline -in "$1")"
  while IFS= read -r line; do
    if [[ "$line" =~ ^[[:space:]]*commonName[[:space:]]*=[[:space:]]*(.*)$ ]]; then
      printf '%s' "${BASH_REMATCH[1]}"
      return 0
    fi
  done <<<"$subject"
}

# Print each certificate the server trusts: the default client's plus server/clients/*.pem.
trusted_certs() {
  local f
  for f in server/client-cert.pem server/clients/*.pem; do
    [[ -f "$f" ]] && printf '%s\n' "$f"
  done
  return 0
}

refuse_shared_cn() {
  local name="$1" dest="$2" f
  while IFS= read -r f; do
    [[ "$f" == "$dest" ]] && continue
    [[ "$(cert_subject_cn "$f")" == "$name" ]] &&
      die "trusted certificate $f already has CN=$name; use --force to add a second one"
  done < <(trusted_certs)
  return 0
}

cmd_add_client() {
  parse_options "--key-type --days --force" "$@"
  ((${#ARGS[@]} == 1)) || die_usage "add-client needs exactly one NAME"
  local name="${ARGS[0]}"
  check_name "$name"
  [[ "$name" != "client" ]] ||
    die_usage "NAME 'client' is the default identity; re-run ./bootstrap.sh --force to replace it"
  require_server_identity
  local dir="client/$name" trusted="server/clients/$name.pem"
  if ((FORCE == 0)); then
    [[ ! -e "$dir" && ! -e "$trusted" ]] ||
      die "client '$name' already exists ($dir, $trusted); use --force to replace it"
    refuse_shared_cn "$name" "$trusted"
  fi
  make_work_dir
  mint_identity "$WORK_DIR/client" "$name" clientAuth
  cp "$WORK_DIR/client-cert.pem" "$WORK_DIR/trusted.pem"
  cp server/server-cert.pem "$WORK_DIR/server-cert.pem"
  make_dir client 0755
  make_dir "$dir" 0700
  make_dir server/clients 0755
  install_file "$WORK_DIR/client-key.pem" "$dir/client-key.pem" 0600
  install_file "$WORK_DIR/client-cert.pem" "$dir/client-cert.pem" 0644
  install_file "$WORK_DIR/server-cert.pem" "$dir/server-cert.pem" 0644
  install_file "$WORK_DIR/trusted.pem" "$trusted" 0644
  cat <<EOF
$PROG: wrote client '$name' ($(key_label), valid $DAYS days, CN=$name):
  $dir/client-cert.pem   client certificate
  $dir/client-key.pem    client private key
  $dir/server-cert.pem   server certificate the client trusts
  $trusted   copy the server now trusts

Reload a running server so it trusts '$name': kill -HUP <pid>
Then, from $dir/: curl --cacert server-cert.pem --cert client-cert.pem --key client-key.pem https://localhost:4443
EOF
}

cmd_revoke_client() {
  parse_options "" "$@"
  ((${#ARGS[@]} == 1)) || die_usage "revoke-client needs exactly one NAME"
  local name="${ARGS[0]}" src dest
  check_name "$name"
  if [[ "$name" == "client" ]]; then
    src="server/client-cert.pem"
  else
    src="server/clients/$name.pem"
  fi
  dest="server/revoked/$name.pem"
  if [[ ! -f "$src" ]]; then
    [[ -f "$dest" ]] && die "client '$name' is already revoked ($dest)"
    die "no trusted client '$name' ($src does not exist); see ./bootstrap.sh list"
  fi
  make_dir server/revoked 0755
  mv -f "$src" "$dest"
  say "revoked '$name': moved $src to $dest"
  say "reload the running server so it stops trusting '$name': kill -HUP <pid>"
}

cert_fingerprint() {
  local out
  out="$(read_openssl x509 -noout -fingerprint -sha256 -in "$1")"
  printf '%s' "${out#*=}"
}

cert_key_kind() {
  local text
  text="$(read_openssl x509 -noout -text -in "$1")"
  if [[ "$text" =~ Public\ Key\ Algorithm:\ *ED25519 ]]; then
    printf 'Ed25519'
  elif [[ "$text" =~ Public\ Key\ Algorithm:\ *rsaEncryption.*Public-Key:\ \(([0-9]+)\ bit\) ]]; then
    printf 'RSA %s' "${BASH_REMATCH[1]}"
  elif [[ "$text" =~ NIST\ CURVE:\ *(P-[0-9]+) ]]; then
    printf 'EC %s' "${BASH_REMATCH[1]}"
  elif [[ "$text" =~ ASN1\ OID:\ *([A-Za-z0-9]+) ]]; then
    printf 'EC %s' "${BASH_REMATCH[1]}"
  else
    printf 'unknown'
  fi
}

# notAfter=Dec  4 21:07:00 2026 GMT -> 2026-12-04 (pure bash: GNU and BSD date differ).
cert_expiry() {
  local out months=" Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec" prefix
  out="$(read_openssl x509 -noout -enddate -in "$1")"
  out="${out#*=}"
  if [[ "$out" =~ ^([A-Z][a-z]{2})\ +([0-9]{1,2})\ [0-9:]+\ ([0-9]{4}) ]]; then
    prefix="${months%%"${BASH_REMATCH[1]}"*}"
    printf '%s-%02d-%02d' "${BASH_REMATCH[3]}" "$((${#prefix} / 4 + 1))" "$((10#${BASH_REMATCH[2]}))"
  else
    printf '%s' "${out// /_}"
  fi
}

# Print "name<TAB>path" for every client identity: default first, then by name.
client_rows() {
  local f name seen=" "
  for f in client/client-cert.pem server/client-cert.pem server/revoked/client.pem; do
    if [[ -f "$f" ]]; then
      printf 'client\t%s\n' "$f"
      break
    fi
  done
  for f in client/*/client-cert.pem server/clients/*.pem server/revoked/*.pem; do
    [[ -f "$f" ]] || continue
    name="${f%/client-cert.pem}"
    name="${name%.pem}"
    name="${name##*/}"
    [[ "$name" == "client" || "$seen" == *" $name "* ]] && continue
    seen+="$name "
    printf '%s\t%s\n' "$name" "$f"
  done | sort
}

cmd_list() {
  parse_options "" "$@"
  ((${#ARGS[@]} == 0)) || die_usage "list takes no arguments"
  local rows=() trusted=" " f name path fp
  while IFS= read -r f; do trusted+="$(cert_fingerprint "$f") "; done < <(trusted_certs)
  if [[ -f server/server-cert.pem ]]; then
    rows+=("server|server|$(cert_key_kind server/server-cert.pem)|$(cert_fingerprint server/server-cert.pem)|$(cert_expiry server/server-cert.pem)|-")
  fi
  while IFS=$'\t' read -r name path; do
    fp="$(cert_fingerprint "$path")"
    f="no"
    [[ "$trusted" == *" $fp "* ]] && f="yes"
    rows+=("client|$name|$(cert_key_kind "$path")|$fp|$(cert_expiry "$path")|$f")
  done < <(client_rows)
  ((${#rows[@]} > 0)) || die "no identities yet; run ./bootstrap.sh first"
  print_table "ROLE|NAME|KEY|SHA256|EXPIRES|TRUSTED" "${rows[@]}"
}

# Print '|'-separated rows as columns separated by at least two spaces.
print_table() {
  local widths=(0 0 0 0 0 0) row cells i
  for row in "$@"; do
    IFS='|' read -r -a cells <<<"$row"
    for i in "${!cells[@]}"; do
      if ((${#cells[i]} > widths[i])); then widths[i]=${#cells[i]}; fi
    done
  done
  for row in "$@"; do
    IFS='|' read -r -a cells <<<"$row"
    printf '%-*s  %-*s  %-*s  %-*s  %-*s  %s\n' \
      "${widths[0]}" "${cells[0]}" "${widths[1]}" "${cells[1]}" "${widths[2]}" "${cells[2]}" \
      "${widths[3]}" "${cells[3]}" "${widths[4]}" "${cells[4]}" "${cells[5]}"
  done
}

# Set P12_PASSWORD from the terminal if it is not in the environment; refuse an empty one.
read_p12_password() {
  if [[ -z "${P12_PASSWORD+set}" ]]; then
    [[ -t 0 ]] || die "no password: set P12_PASSWORD or run export-p12 from a terminal"
    local again
    IFS= read -r -s -p "Password for the .p12 bundle: " P12_PASSWORD </dev/tty
    printf '\n' >/dev/tty
    IFS= read -r -s -p "Repeat it: " again </dev/tty
    printf '\n' >/dev/tty
    [[ "$P12_PASSWORD" == "$again" ]] || die "the two passwords differ; nothing written"
  fi
  [[ -n "$P12_PASSWORD" ]] ||
    die "empty password refused: Firefox and macOS reject .p12 bundles without one"
  export P12_PASSWORD
}

# Print the pkcs12 options for a bundle old importers (macOS Keychain) accept.
legacy_p12_options() {
  local help
  help="$(openssl pkcs12 -help 2>&1 || true)"
  if [[ "$help" == *"-legacy "* ]] && openssl list -providers -provider legacy >/dev/null 2>&1; then
    printf '%s' -legacy
  elif [[ "$help" == *"-keypbe"* && "$help" == *"-certpbe"* ]]; then
    # OpenSSL 1.1.1 and LibreSSL: no -legacy, but these are what -legacy means (MAC is SHA-1 by default there).
    printf '%s' "-keypbe PBE-SHA1-3DES -certpbe PBE-SHA1-3DES"
    [[ "$help" != *"-macalg"* ]] || printf ' %s' "-macalg sha1"
  else
    die "--legacy: this openssl ($(openssl version)) can write neither -legacy nor SHA1/3DES PKCS#12"
  fi
}

cmd_export_p12() {
  parse_options "--legacy" "$@"
  ((${#ARGS[@]} == 1)) || die_usage "export-p12 needs exactly one NAME"
  local name="${ARGS[0]}" dir out extra=() opts kind=""
  check_name "$name"
  if [[ "$name" == "client" ]]; then dir="client"; else dir="client/$name"; fi
  out="client/$name.p12"
  [[ -f "$dir/client-cert.pem" && -f "$dir/client-key.pem" ]] ||
    die "no client identity '$name' ($dir/client-cert.pem, $dir/client-key.pem); see ./bootstrap.sh list"
  if ((LEGACY == 1)); then
    opts="$(legacy_p12_options)"
    read -r -a extra <<<"$opts"
    kind=", legacy encryption: $opts"
  fi
  read_p12_password
  make_work_dir
  run_openssl pkcs12 -export -in "$dir/client-cert.pem" -inkey "$dir/client-key.pem" \
    -name "$name" -passout env:P12_PASSWORD ${extra[@]+"${extra[@]}"} -out "$WORK_DIR/bundle.p12"
  install_file "$WORK_DIR/bundle.p12" "$out" 0600
  say "wrote $out (certificate and private key of '$name'$kind)"
  say "import it into a browser or keychain with the password you chose"
}

main() {
  require_openssl
  enter_project_dir
  local cmd="${1:-}"
  case "$cmd" in
    add-client) shift && cmd_add_client "$@" ;;
    revoke-client) shift && cmd_revoke_client "$@" ;;
    list) shift && cmd_list "$@" ;;
    export-p12) shift && cmd_export_p12 "$@" ;;
    help) print_usage ;;
    *) cmd_default "$@" ;;
  esac
}

main "$@"
