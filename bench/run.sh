#!/usr/bin/env bash
# Blob download throughput of a kagami node next to Debian's docker-registry
# (CNCF distribution, filesystem storage) serving the same content: one
# 256 MiB blob and 1,000 16 KiB blobs, each at 1 and 16 concurrent clients.
#
# Usage: bench/run.sh            (from anywhere; needs root to apt-get install)
# Env:   BIG_ROUNDS=32 SMALL_ROUNDS=10   passes over each digest list per run
#        REPEATS=3                      timed runs per scenario; the best is kept
#
# Prints progress on stderr and one Markdown table on stdout. Everything it
# starts listens on 127.0.0.1 only and is stopped on exit; its temp dir is
# removed.
set -euo pipefail

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
declare -A rounds_of=([big]=${BIG_ROUNDS:-32} [small]=${SMALL_ROUNDS:-10})
repeats=${REPEATS:-3}
servers=(kagami registry)
scenarios=("big 1" "big 16" "small 1" "small 16")
# How long a server may take to answer its readiness URL, and to stop.
ready_tenths=300
stop_tenths=100

log() { printf 'run.sh: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}

work=""
server_pid=""
cleanup() {
	if [[ -n $server_pid ]]; then stop_server; fi
	if [[ -n $work ]]; then rm -rf -- "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

install_missing() {
	local missing=()
	command -v skopeo >/dev/null || missing+=(skopeo)
	[[ -x /usr/bin/docker-registry ]] || missing+=(docker-registry)
	command -v curl >/dev/null || missing+=(curl)
	if ((${#missing[@]})); then
		log "installing ${missing[*]}"
		apt-get update
		DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
	fi
}

# --- servers: start_<name> DIR PORT sets server_pid and waits until ready ---

start_kagami() {
	"$target/release/kagami" --log-level warn server --store layout --insecure-http --data-dir "$1" \
		--https-listen-port "$2" --bind-address 127.0.0.1 --metrics-address "" &
	server_pid=$!
	wait_ready "http://127.0.0.1:$2/readyz"
}

start_registry() {
	local config="$work/registry-$2.yml"
	# The blob descriptor cache is what Debian's own config.yml enables.
	cat >"$config" <<-EOF
		version: 0.1
		log:
		  level: error
		  accesslog:
		    disabled: true
		storage:
		  cache:
		    blobdescriptor: inmemory
		  filesystem:
		    rootdirectory: $1
		http:
		  addr: 127.0.0.1:$2
	EOF
	# Its error log names every 404, a line per request: keep it out of the way.
	/usr/bin/docker-registry serve "$config" 2>>"$work/registry.log" &
	server_pid=$!
	wait_ready "http://127.0.0.1:$2/v2/"
}

wait_ready() {
	local i
	for ((i = 0; i < ready_tenths; i++)); do
		if curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null; then return 0; fi
		kill -0 "$server_pid" 2>/dev/null || die "the server exited before $1 answered"
		sleep 0.1
	done
	die "$1 did not answer within $((ready_tenths / 10)) s"
}

stop_server() {
	local i pid=$server_pid
	server_pid=""
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < stop_tenths; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# field NAME LINE: the value of NAME=... in a `kagami-bench load` line.
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

# --- the run ---

install_missing
log "building kagami and kagami-bench (release)"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p kagami -p kagami-bench
bench="$target/release/kagami-bench"

work=$(mktemp -d -t kagami-bench.XXXXXX)
fixtures="$work/fixtures"
log "writing fixtures into $fixtures"
"$bench" fixtures --out "$fixtures"

log "importing into kagami"
"$target/release/kagami" --log-level warn image import --data-dir "$work/kagami" "$fixtures/images.tar" >&2

log "pushing into docker-registry"
port=$("$bench" port)
start_registry "$work/registry" "$port"
for image in big small; do
	# Without --preserve-digests skopeo gzips uncompressed layers on the way,
	# and the registry would hold other blobs than the digest lists name.
	skopeo --insecure-policy copy --quiet --preserve-digests --dest-tls-verify=false \
		"oci:$fixtures/layout-$image" "docker://127.0.0.1:$port/bench/$image:1"
done
stop_server

declare -A mbps reqps rss cpu
ticks_per_second=$(getconf CLK_TCK)
for scenario in "${scenarios[@]}"; do
	read -r image clients <<<"$scenario"
	rounds=${rounds_of[$image]}
	for server in "${servers[@]}"; do
		port=$("$bench" port)
		"start_$server" "$work/$server" "$port"
		load=("$bench" load --url "http://127.0.0.1:$port" --repo "bench/$image"
			--digests "$fixtures/$image.digests" --concurrency "$clients")
		# The warm-up also checks every body against its digest.
		"${load[@]}" --rounds 1 --verify >/dev/null
		# Best of a few: on a shared 2-core machine a run can only be slowed
		# down by others, never sped up.
		best="" best_mbps=-1
		before=$(cpu_ticks "$server_pid")
		for ((r = 0; r < repeats; r++)); do
			line=$("${load[@]}" --rounds "$rounds")
			log "$server $image x$clients: $line"
			if awk -v a="$(field mb_per_s "$line")" -v b="$best_mbps" 'BEGIN { exit !(a > b) }'; then
				best=$line best_mbps=$(field mb_per_s "$line")
			fi
		done
		after=$(cpu_ticks "$server_pid")
		hwm_kib=$(awk '/^VmHWM:/ { print $2 }' "/proc/$server_pid/status")
		stop_server
		key="$image x$clients/$server"
		mbps[$key]=$best_mbps
		reqps[$key]=$(field req_per_s "$best")
		rss[$key]=$(awk -v k="$hwm_kib" 'BEGIN { printf "%.0f", k / 1024 }')
		# Server CPU seconds per timed run, on average.
		cpu[$key]=$(awk -v t="$((after - before))" -v hz="$ticks_per_second" -v n="$repeats" \
			'BEGIN { printf "%.1f", t / hz / n }')
	done
done

printf '| scenario | MB/s kagami | MB/s registry | req/s kagami | req/s registry | peak RSS MiB kagami | peak RSS MiB registry | server CPU s/run kagami | server CPU s/run registry |\n'
printf '|---|--:|--:|--:|--:|--:|--:|--:|--:|\n'
for scenario in "${scenarios[@]}"; do
	read -r image clients <<<"$scenario"
	s="$image x$clients"
	printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$s" \
		"${mbps[$s/kagami]}" "${mbps[$s/registry]}" \
		"${reqps[$s/kagami]}" "${reqps[$s/registry]}" \
		"${rss[$s/kagami]}" "${rss[$s/registry]}" \
		"${cpu[$s/kagami]}" "${cpu[$s/registry]}"
done
