#!/usr/bin/env bash
# `make image-test`: build the Dockerfile and run the image for real, without a Docker engine
# or a container registry.
#
#   1. the FROM image (docker.io/library/python:3.11-slim-bookworm by default) is made locally:
#      Debian bookworm bootstrapped with debootstrap (python3, python3-venv, ca-certificates,
#      plus this machine's CA certificates so TLS through its proxy works), imported under that
#      name, so the build with --pull=never finds it and never asks a registry;
#   2. buildah builds the Dockerfile (chroot isolation, host network: pip reaches PyPI);
#   3. podman runs the image as its non-root user: `--version`, then `check-config` and one
#      `once --json` cycle against the simulator (`python -m guard.sim --seed demo`, started
#      on this host; the container shares the host network so 127.0.0.1 is the same), then
#      checks the report; when the image's `run` has `--serve`, also the HEALTHCHECK.
#
# Needs root (buildah/podman with the system's storage). Missing tools are installed with
# apt-get. The bootstrapped base is kept in $CACHE (and in containers-storage), so a second
# run only rebuilds what changed.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

BASE_IMAGE="${BASE_IMAGE:-docker.io/library/python:3.11-slim-bookworm}"
IMAGE="${IMAGE:-localhost/cost-guard:test}"
CACHE="${COST_GUARD_IMAGE_CACHE:-/var/tmp/cost-guard-image-test}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
HOST_PYTHON="${HOST_PYTHON:-$ROOT/.venv/bin/python}"
# overlay: the kernel's overlayfs on ext4/xfs, which this host has (as root). On a file system
# overlay cannot sit on, set STORAGE_DRIVER=vfs (slower, full copies per layer).
STORAGE_DRIVER="${STORAGE_DRIVER:-overlay}"
BASE_LABEL="cost-guard.image-test.base=debootstrap-bookworm"

# Explicit limits for the build's RUN steps and the test containers: podman's defaults
# (nofile 1048576) are above this host's hard limits, and runc then fails with "error setting
# rlimits ... operation not permitted".
LIMITS=(--ulimit nofile=20000:20000 --ulimit nproc=32768:32768)
BUILDAH=(buildah --storage-driver "$STORAGE_DRIVER")
PODMAN=(podman --storage-driver "$STORAGE_DRIVER" --runtime runc)
# cgroupfs: no systemd on these hosts to delegate to (nor to run healthcheck timers with, so
# the one-shot containers skip the image's HEALTHCHECK; the serve step runs it by hand).
RUN=("${PODMAN[@]}" --cgroup-manager cgroupfs run --rm --no-healthcheck --network=host
     "${LIMITS[@]}")
PG_ADMIN_URL="${PG_ADMIN_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
PG_TEST_DB=cost_guard_image_test
export PGOPTIONS="-c client_min_messages=warning"  # no NOTICE for DROP DATABASE IF EXISTS

T0=$SECONDS
step_start=$SECONDS
say() { printf '\n==> %s\n' "$*"; }
done_step() { printf '    (%ds)\n' "$((SECONDS - step_start))"; step_start=$SECONDS; }
die() { printf '\nimage-test FAILED: %s\n' "$*" >&2; exit 1; }

SIM_PID=""
TMP="$(mktemp -d)"
cleanup() {
    if [[ -n "$SIM_PID" ]] && kill -0 "$SIM_PID" 2>/dev/null; then
        kill "$SIM_PID" 2>/dev/null || true
        wait "$SIM_PID" 2>/dev/null || true
    fi
    "${PODMAN[@]}" rm -f -i cost-guard-image-test-serve >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

# --- 0. tools ------------------------------------------------------------------------------
[[ "$(id -u)" == 0 ]] || die "run as root (buildah and podman use the system's container storage)"
[[ -x "$HOST_PYTHON" ]] || die "$HOST_PYTHON not found: run 'make .venv/.installed-demo' first"

say "tools"
missing=()
for pair in buildah:buildah podman:podman debootstrap:debootstrap runc:runc \
            fuse-overlayfs:fuse-overlayfs newuidmap:uidmap; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
done
if ((${#missing[@]})); then
    echo "    installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
fi
buildah --version
podman --version
done_step

# --- 1. the base image ---------------------------------------------------------------------
say "base image $BASE_IMAGE"
mkdir -p "$CACHE"
BASE_TAR="$CACHE/bookworm-rootfs.tar"
if "${PODMAN[@]}" image exists "$BASE_IMAGE"; then
    echo "    already in containers-storage"
else
    if [[ ! -s "$BASE_TAR" ]]; then
        command -v debootstrap >/dev/null || die "debootstrap is missing"
        rootfs="$CACHE/rootfs.tmp"
        rm -rf "$rootfs"
        echo "    debootstrap bookworm from $DEBIAN_MIRROR (about a minute)"
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
            bookworm "$rootfs" "$DEBIAN_MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
            || die "debootstrap failed; see $CACHE/debootstrap.log"
        # This machine's CAs (dereferenced): a TLS-inspecting proxy's CA comes along.
        rm -rf "$rootfs/etc/ssl/certs"
        cp -rL /etc/ssl/certs "$rootfs/etc/ssl/certs"
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
            "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
        tar -C "$rootfs" --numeric-owner -cf "$BASE_TAR.part" . || die "tar of the rootfs failed"
        mv "$BASE_TAR.part" "$BASE_TAR"
        rm -rf "$rootfs"
    else
        echo "    from the cached rootfs $BASE_TAR"
    fi
    "${PODMAN[@]}" import \
        --change "LABEL ${BASE_LABEL}" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        "$BASE_TAR" "$BASE_IMAGE" >/dev/null || die "podman import of the base failed"
fi
"${PODMAN[@]}" image inspect --format '    {{.Id}} {{.Size}} bytes' "$BASE_IMAGE"
done_step

# --- 2. build ------------------------------------------------------------------------------
say "build $IMAGE"
build_started="$(date +%s)"
# --format docker: the OCI image format has no HEALTHCHECK. --layers: reuse unchanged steps.
"${BUILDAH[@]}" build --isolation chroot --runtime runc --network host "${LIMITS[@]}" \
    --pull=never --layers --format docker \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    -t "$IMAGE" -f Dockerfile . >"$TMP/build.log" 2>&1 \
    || { tail -40 "$TMP/build.log" >&2; die "buildah build failed (log above)"; }
tail -3 "$TMP/build.log"
done_step

# --- 3. image metadata ---------------------------------------------------------------------
say "image config"
user="$("${PODMAN[@]}" image inspect --format '{{.Config.User}}' "$IMAGE")"
entrypoint="$("${PODMAN[@]}" image inspect --format '{{json .Config.Entrypoint}}' "$IMAGE")"
health="$("${PODMAN[@]}" image inspect --format '{{json .HealthCheck}}' "$IMAGE")"
size="$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")"
echo "    user=$user entrypoint=$entrypoint size=$((size / 1000000)) MB"
echo "    healthcheck=$health"
[[ "$user" == 10001:10001 ]] || die "image user is '$user', expected 10001:10001"
[[ "$entrypoint" == '["cost-guard"]' ]] || die "entrypoint is $entrypoint"
[[ "$health" == *healthz* ]] || die "no HEALTHCHECK probing /healthz in the image"
done_step

# --- 4. run it -----------------------------------------------------------------------------
say "cost-guard --version (as the image's user)"
version="$("${RUN[@]}" "$IMAGE" --version)" || die "cost-guard --version failed in the image"
echo "    $version"
[[ "$version" == cost-guard* ]] || die "unexpected --version output: $version"

uid="$("${RUN[@]}" --entrypoint python3 "$IMAGE" -c 'import os; print(os.getuid())')"
[[ "$uid" == 10001 ]] || die "processes run as uid $uid, expected 10001"
# No compiler or build tools in the final image.
if "${RUN[@]}" --entrypoint sh "$IMAGE" -c \
    'for t in gcc cc make g++ git; do command -v $t; done | grep .'; then
    die "build tools found in the final image (listed above)"
fi
echo "    uid $uid, no build tools"
done_step

CONFIG_MOUNT=(-v "$ROOT/deploy/cost-guard.example.yaml:/etc/cost-guard/cost-guard.yaml:ro"
              -e COST_GUARD_CONFIG=/etc/cost-guard/cost-guard.yaml)

say "simulator on the host: python -m guard.sim --seed demo"
"$HOST_PYTHON" -m guard.sim --seed demo >"$TMP/sim.out" 2>"$TMP/sim.err" &
SIM_PID=$!
for _ in $(seq 1 100); do
    [[ -s "$TMP/sim.out" ]] && break
    kill -0 "$SIM_PID" 2>/dev/null || { cat "$TMP/sim.err" >&2; die "the simulator exited"; }
    sleep 0.1
done
SIM_URL="$(head -1 "$TMP/sim.out")"
[[ "$SIM_URL" == http://127.0.0.1:* ]] || die "the simulator printed no endpoint URL"
echo "    $SIM_URL"
SIM_ENV=(-e "AWS_ENDPOINT_URL=$SIM_URL" -e AWS_DEFAULT_REGION=us-east-1
         -e AWS_ACCESS_KEY_ID=testing -e AWS_SECRET_ACCESS_KEY=testing
         -e AWS_SESSION_TOKEN=testing)
done_step

say "cost-guard check-config (deploy/cost-guard.example.yaml mounted read-only)"
# With the simulator's credentials: check-config also opens the database and asks STS who the
# credentials are, and fails (exit 4) without any.
"${RUN[@]}" "${CONFIG_MOUNT[@]}" "${SIM_ENV[@]}" -e SLACK_BOT_TOKEN=xoxb-not-a-real-token \
    "$IMAGE" check-config >"$TMP/check-config.out" 2>&1 \
    || { cat "$TMP/check-config.out" >&2; die "check-config failed in the image"; }
grep -q 'mode: dry-run' "$TMP/check-config.out" || die "check-config did not print the config"
grep -q '^# ✓ AWS credentials' "$TMP/check-config.out" || die "check-config did not check AWS"
if grep -q 'xoxb-not-a-real-token' "$TMP/check-config.out"; then
    die "check-config printed a secret"
fi
echo "    ok: effective config printed, secret masked, database and AWS checked"
done_step

say "cost-guard once --json in the image (SQLite in the non-root user's data dir)"
"${RUN[@]}" "${CONFIG_MOUNT[@]}" "${SIM_ENV[@]}" "$IMAGE" once --json \
    >"$TMP/once.json" 2>"$TMP/once.err" \
    || { tail -30 "$TMP/once.err" >&2; die "'once' failed in the image"; }
"$HOST_PYTHON" - "$TMP/once.json" <<'PY' || die "the cycle report is not what the simulator holds"
import json
import sys

from guard.sim.__main__ import DEMO_ENDPOINTS, DEMO_NOTEBOOKS

report = json.load(open(sys.argv[1]))
by_kind = report["by_kind"]
problems = []
if report["mode"] != "dry-run":
    problems.append(f"mode {report['mode']}")
if by_kind.get("notebook", {}).get("running") != len(DEMO_NOTEBOOKS):
    problems.append(f"notebooks: {by_kind.get('notebook')}")
if by_kind.get("endpoint", {}).get("running") != len(DEMO_ENDPOINTS):
    problems.append(f"endpoints: {by_kind.get('endpoint')}")
if report["errors"]:
    problems.append(f"errors: {report['errors']}")
warned = {w["name"] for w in report["warned"]}
if not {"alice-idle", "churn-model-staging"} <= warned or "bob-busy" in warned:
    problems.append(f"warned: {sorted(warned)}")
if any(a.get("outcome") == "done" for a in report["actions"]):
    problems.append("dry-run acted")
if problems:
    sys.exit("    " + "; ".join(problems))
print(f"    ok: {report['resources']} resources, ${report['usd_per_hour']}/h, "
      f"warned {sorted(warned)}, {report['api_calls_total']} AWS calls, no errors")
PY
done_step

# The compose setup: Postgres, and a read-only root file system (only /tmp writable).
if command -v psql >/dev/null && psql "$PG_ADMIN_URL" -Atqc 'select 1' >/dev/null 2>&1; then
    say "cost-guard once against Postgres, read-only root file system"
    psql "$PG_ADMIN_URL" -q -c "DROP DATABASE IF EXISTS $PG_TEST_DB" \
        -c "CREATE DATABASE $PG_TEST_DB" || die "could not create database $PG_TEST_DB"
    pg_url="$(sed "s#^postgresql://#postgresql+psycopg://#; s#/[^/]*\$#/$PG_TEST_DB#" \
        <<<"$PG_ADMIN_URL")"
    "${RUN[@]}" --read-only --tmpfs /tmp "${CONFIG_MOUNT[@]}" "${SIM_ENV[@]}" \
        -e "COST_GUARD_DATABASE_URL=$pg_url" "$IMAGE" once --json \
        >"$TMP/once-pg.json" 2>"$TMP/once-pg.err" \
        || { tail -30 "$TMP/once-pg.err" >&2; die "'once' on Postgres failed in the image"; }
    "$HOST_PYTHON" - "$TMP/once-pg.json" <<'PY' || die "the Postgres cycle report is wrong"
import json
import sys

report = json.load(open(sys.argv[1]))
if report["resources"] != 4 or report["errors"]:
    sys.exit(f"    {report['resources']} resources, errors {report['errors']}")
print(f"    ok: {report['resources']} resources, {report['warnings']} warnings, schema migrated")
PY
    psql "$PG_ADMIN_URL" -q -c "DROP DATABASE IF EXISTS $PG_TEST_DB" || true
    done_step
else
    say "skipped: no PostgreSQL at $PG_ADMIN_URL (the Postgres + read-only run)"
fi

# `run --serve` (HTTP /healthz) and the HEALTHCHECK, when this version of the CLI has it.
if "${RUN[@]}" "$IMAGE" run --help 2>/dev/null | grep -q -- '--serve'; then
    say "cost-guard run --serve + HEALTHCHECK"
    port="${SERVE_PORT:-18080}"
    # Without systemd, podman cannot set up the HEALTHCHECK's timer and says so on stderr
    # (kept in serve.err); `healthcheck run` below runs the image's check command itself.
    "${PODMAN[@]}" --cgroup-manager cgroupfs run -d --name cost-guard-image-test-serve \
        --network=host "${LIMITS[@]}" "${CONFIG_MOUNT[@]}" "${SIM_ENV[@]}" \
        -e "COST_GUARD_SERVE__PORT=$port" "$IMAGE" >/dev/null 2>"$TMP/serve.err" \
        || { cat "$TMP/serve.err" >&2; die "could not start 'run --serve'"; }
    healthy=""
    for _ in $(seq 1 60); do
        if "${PODMAN[@]}" healthcheck run cost-guard-image-test-serve >/dev/null 2>&1; then
            healthy=yes
            break
        fi
        sleep 1
    done
    if [[ -z "$healthy" ]]; then
        "${PODMAN[@]}" logs cost-guard-image-test-serve 2>&1 | tail -30 >&2
        die "the HEALTHCHECK did not pass within 60 s"
    fi
    echo "    healthy: /healthz answers on :$port"
    "${PODMAN[@]}" stop -t 30 cost-guard-image-test-serve >/dev/null 2>>"$TMP/serve.err"
    code="$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' cost-guard-image-test-serve)"
    [[ "$code" == 0 ]] || die "'run --serve' exited $code on SIGTERM, expected 0"
    echo "    stopped by SIGTERM, exit 0"
    done_step
else
    say "skipped: this version's 'run' has no --serve yet (HEALTHCHECK not exercised)"
fi

# Each rebuild leaves the previous run's layers dangling: drop those (only images made on the
# bootstrapped base, older than this build), keeping the ones this build used as its cache.
"${PODMAN[@]}" image prune -f --filter "label=${BASE_LABEL%%=*}" \
    --filter "until=$build_started" >/dev/null 2>&1 || true

say "image-test passed in $((SECONDS - T0)) s"
"${PODMAN[@]}" images --format '    {{.Repository}}:{{.Tag}}  {{.Size}}' \
    --filter "reference=$IMAGE"
