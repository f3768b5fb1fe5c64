# Sourced by scripts/test.sh: what `sam local invoke` needs on a machine with no Docker daemon
# and no container registry (../shared/LOCAL-AWS.md): SAM CLI and cfn-lint in their own
# virtualenv, Debian's docker.io and busybox-static, a running dockerd, and a stand-in for the
# provided.al2023 base image built from this machine's own files.

SAM_BASE_IMAGE=sluice-provided-al2023:local
SAM_VENV=.venv-sam

ensure_sam() {
  if [ ! -x "$SAM_VENV/bin/sam" ] || [ ! -x "$SAM_VENV/bin/cfn-lint" ]; then
    echo "installing aws-sam-cli and cfn-lint into $SAM_VENV"
    python3 -m venv "$SAM_VENV"
    "$SAM_VENV/bin/pip" install -q --disable-pip-version-check aws-sam-cli cfn-lint
  fi
  export PATH="$PWD/$SAM_VENV/bin:$PATH" SAM_CLI_TELEMETRY=0
}

ensure_docker() {
  if ! command -v dockerd >/dev/null || ! command -v busybox >/dev/null; then
    echo "installing docker.io and busybox-static"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io busybox-static >/dev/null
  fi
  if ! docker info >/dev/null 2>&1; then
    mkdir -p target
    dockerd >target/dockerd.log 2>&1 &
    for _ in $(seq 60); do
      docker info >/dev/null 2>&1 && break
      sleep 1
    done
    docker info >/dev/null 2>&1 || { echo "dockerd did not start: target/dockerd.log" >&2; return 1; }
  fi
  echo "docker $(docker version --format '{{.Server.Version}}')"
}

# build_base_image BOOTSTRAP: an image with what SAM's local runtime needs to run BOOTSTRAP
# (a shell and mv/chmod from busybox, the shared libraries it links, the CA bundle).
build_base_image() {
  local bootstrap=$1 root
  root=$(mktemp -d)
  mkdir -p "$root"/{bin,tmp,var/task,var/runtime,etc/ssl/certs,lib64,opt}
  chmod 1777 "$root/tmp"
  cp "$(command -v busybox)" "$root/bin/busybox"
  for tool in sh mv chmod cp ls cat mkdir rm ln; do ln -s busybox "$root/bin/$tool"; done
  ldd "$bootstrap" | grep -o '/[^ ]*' | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  tar -C "$root" -cf - . | docker import -c 'ENV PATH=/bin' - "$SAM_BASE_IMAGE" >/dev/null
  rm -rf "$root"
  echo "base image $SAM_BASE_IMAGE ($(docker image inspect -f '{{.Size}}' "$SAM_BASE_IMAGE") bytes)"
}

# The address containers on Docker's default bridge reach this machine at (docker0's).
docker_host_ip() {
  python3 - <<'PY'
import fcntl, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
# SIOCGIFADDR: the interface's IPv4 address (no dependency on iproute2).
print(socket.inet_ntoa(fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", b"docker0"))[20:24]))
PY
}
