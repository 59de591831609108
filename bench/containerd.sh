#!/usr/bin/env bash
# Time for containerd on node B to pull and unpack an image through kagami
# from node A, next to the same pull straight from Debian's docker-registry
# holding the same bytes, in one run on one machine.
#
# Two containerds (A and B, each with its own root, state, socket and config
# in a temp dir), a `kagami server` on each (P2P on, B bootstrapped from A,
# B writing containerd's hosts.toml for docker.io), and a docker-registry.
# The image (`kagami-bench image`: 4 uncompressed layers of 64 MiB of
# pseudo-random bytes) is imported into containerd A and pushed into the
# registry unchanged. Then, alternating the order each round, containerd B
# pulls it with `ctr images pull --snapshotter native` once through kagami
# (`--hosts-dir`) and once from the registry (`--plain-http`); between pulls
# B's image is removed (`images rm --sync`) and B is checked to hold no
# content and no snapshots, and after each kagami pull B's /debug/p2p must
# show the image's bytes relayed from A.
#
# Usage: bench/containerd.sh    (from anywhere; needs root for containerd and
#                                to apt-get install what is missing)
# Env:   REPEATS=3         rounds; each pulls once from each source
#        LAYERS=4 SIZE_MIB=256   the image: layer count, payload in all
#
# Prints progress on stderr and one Markdown table on stdout. Everything it
# starts listens on 127.0.0.1 (or a Unix socket in its temp dir) only and is
# stopped on exit; its temp dir is removed.
set -euo pipefail
# A failing ctr or curl inside $(…) must stop the run too.
shopt -s inherit_errexit

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
repeats=${REPEATS:-3}
layers=${LAYERS:-4}
size_mib=${SIZE_MIB:-256}
sources=(kagami registry)
# How long a server may take to get ready or to stop, and a condition
# (advertising, withdrawing) to come true.
ready_tenths=300
stop_tenths=100
# A pull of the whole image may take this long before the run gives up.
pull_timeout=600
# The pulls must not wander off through a proxy, nor ctr pick up a stray config.
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy

log() { printf 'containerd.sh: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}

work=""
# Started processes, stopped in reverse order on exit.
started=()
declare -A pid_of
cleanup() {
	local i
	for ((i = ${#started[@]} - 1; i >= 0; i--)); do stop "${started[i]}"; done
	if [[ -n $work ]]; then rm -rf -- "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

install_missing() {
	local missing=()
	command -v containerd >/dev/null || missing+=(containerd)
	command -v skopeo >/dev/null || missing+=(skopeo)
	[[ -x /usr/bin/docker-registry ]] || missing+=(docker-registry)
	command -v curl >/dev/null || missing+=(curl)
	command -v jq >/dev/null || missing+=(jq)
	if ((${#missing[@]})); then
		log "installing ${missing[*]}"
		apt-get update
		DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
	fi
}

# --- processes: spawn NAME CMD… runs CMD in the background as NAME ---

spawn() {
	local name=$1
	shift
	"$@" >>"$work/$name.log" 2>&1 &
	pid_of[$name]=$!
	started+=("$name")
}

stop() {
	local i pid=${pid_of[$1]:-}
	[[ -n $pid ]] || return 0
	pid_of[$1]=""
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < stop_tenths; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# until NAME WHAT CMD…: retries CMD every 0.1 s until it succeeds; dies,
# with NAME's log, when NAME exits or the time is up.
until_ok() {
	local name=$1 what=$2 i
	shift 2
	for ((i = 0; i < ready_tenths; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		if ! kill -0 "${pid_of[$name]}" 2>/dev/null; then
			tail -n 30 "$work/$name.log" >&2 || true
			die "$name exited before $what"
		fi
		sleep 0.1
	done
	tail -n 30 "$work/$name.log" >&2 || true
	die "$name: $what did not happen within $((ready_tenths / 10)) s"
}

answers() { curl -fsS -o /dev/null --max-time 1 "$1"; }

free_port() { "$bench" port; }

# --- containerd ---

start_containerd() {
	local name=containerd-$1 dir=$work/containerd-$1
	mkdir -p "$dir"
	# The test daemon's config (crates/kagami-containerd/src/testing.rs):
	# only plugins that start without kernel extras; no CRI.
	cat >"$dir/config.toml" <<-EOF
		version = 2
		root = "$dir/root"
		state = "$dir/state"
		disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.opt"]
		[grpc]
		  address = "$dir/c.sock"
		[ttrpc]
		  address = "$dir/c.sock.ttrpc"
		[debug]
		  address = ""
		[metrics]
		  address = ""
	EOF
	spawn "$name" containerd --config "$dir/config.toml"
	until_ok "$name" "serving its socket" ctr -a "$dir/c.sock" version
}

sock() { printf '%s/containerd-%s/c.sock' "$work" "$1"; }

# ctr_on NODE ARGS…: ctr against that node's containerd, namespace k8s.io.
ctr_on() { ctr -a "$(sock "$1")" -n k8s.io "${@:2}"; }

# What containerd NODE holds: images, content blobs, native snapshots.
holdings() {
	local images content snapshots
	images=$(ctr_on "$1" images ls -q)
	content=$(ctr_on "$1" content ls -q)
	snapshots=$(ctr_on "$1" snapshots --snapshotter native ls | tail -n +2)
	printf '%s images, %s blobs, %s snapshots' "$(count "$images")" "$(count "$content")" \
		"$(count "$snapshots")"
}
count() { grep -c . <<<"$1" || true; }

# --- kagami ---

# start_kagami NODE EXTRA…: a kagami server on NODE's containerd.
start_kagami() {
	local node=$1 port p2p
	shift
	port=$(free_port)
	p2p=$(free_port)
	spawn "kagami-$node" "$target/release/kagami" --log-level warn server \
		--store containerd --containerd-address "$(sock "$node")" \
		--embedded-registry --psk-file "$work/psk" --p2p-port "$p2p" \
		--https-listen-port "$port" --bind-address 127.0.0.1 --insecure-http \
		--data-dir "$work/kagami-$node" "$@"
	url_of[$node]=http://127.0.0.1:$port
	until_ok "kagami-$node" "answering /readyz" answers "${url_of[$node]}/readyz"
}
declare -A url_of

# status NODE [JQ]: NODE's /debug/p2p, or one value of it.
status() { curl -fsS --max-time 5 "${url_of[$1]}/debug/p2p" | jq -r "${2:-.}"; }

# Bytes kagami B relayed from peer A so far.
relayed_from_a() { status b ".bytes_relayed[\"$a_id\"] // 0"; }

at_least() { (($(status "$1" "$2") >= $3)); }
exactly() { (($(status "$1" "$2") == $3)); }

# --- docker-registry ---

start_registry() {
	local config="$work/registry.yml"
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
		    rootdirectory: $work/registry
		http:
		  addr: 127.0.0.1:$registry_port
	EOF
	spawn registry /usr/bin/docker-registry serve "$config"
	until_ok registry "answering /v2/" answers "http://127.0.0.1:$registry_port/v2/"
}

# --- measuring ---

# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# Server CPU ticks of a source so far.
source_ticks() {
	case $1 in
	kagami) echo $(($(cpu_ticks "${pid_of[kagami-a]}") + $(cpu_ticks "${pid_of[kagami-b]}"))) ;;
	registry) cpu_ticks "${pid_of[registry]}" ;;
	esac
}
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

reference_of() {
	case $1 in
	kagami) echo "$reference" ;;
	registry) echo "127.0.0.1:$registry_port/$repo" ;;
	esac
}

pull_flags_of() {
	case $1 in
	kagami) echo "--hosts-dir $work/b-certs.d" ;;
	registry) echo "--plain-http" ;;
	esac
}

# pull SOURCE: one timed pull on B into seconds_of[SOURCE], then removes it.
pull() {
	local source=$1 ref before_bytes after_bytes ticks start end
	ref=$(reference_of "$source")
	local held
	held=$(holdings b)
	[[ $held == "0 images, 0 blobs, 0 snapshots" ]] || die "B is not empty before a pull: $held"
	before_bytes=$(relayed_from_a)
	ticks=$(source_ticks "$source")
	start=$EPOCHREALTIME
	# shellcheck disable=SC2046 # the flags are words on purpose
	if ! timeout "$pull_timeout" ctr -a "$(sock b)" -n k8s.io images pull \
		$(pull_flags_of "$source") --snapshotter native "$ref" >"$work/pull.log" 2>&1; then
		tail -n 20 "$work/pull.log" >&2
		die "ctr pull $ref failed"
	fi
	end=$EPOCHREALTIME
	cpu_of[$source]+=" $(($(source_ticks "$source") - ticks))"
	local seconds
	seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
	seconds_of[$source]+=" $seconds"
	held=$(holdings b)
	log "$source: $seconds s ($held on B after the pull)"
	[[ $held == "1 images, $((layers + 2)) blobs, $layers snapshots" ]] ||
		die "B does not hold the unpacked image after pulling from $source: $held"
	ctr_on b content ls -q | sort >"$work/content-$source"
	after_bytes=$(relayed_from_a)
	if [[ $source == kagami ]]; then
		((after_bytes - before_bytes >= image_bytes)) ||
			die "B relayed $((after_bytes - before_bytes)) bytes from A, the image has $image_bytes"
	else
		((after_bytes == before_bytes)) || die "B relayed bytes from A during a registry pull"
	fi
	ctr_on b images rm --sync "$ref" >/dev/null
	# B advertised what it pulled; wait until it has let go of it all, so
	# that the next pull starts from the same quiet state.
	until_ok kagami-b "B withdrawing its keys" exactly b .advertised_keys 0
}
declare -A seconds_of cpu_of

# --- the run ---

install_missing
log "building kagami and kagami-bench (release)"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p kagami -p kagami-bench
bench="$target/release/kagami-bench"

work=$(mktemp -d -t kagami-containerd-bench.XXXXXX)
reference=docker.io/library/bench:1
repo=library/bench:1
log "writing the image ($layers layers, $size_mib MiB) into $work/image.tar"
line=$("$bench" image --out "$work/image.tar" --reference "$reference" \
	--layers "$layers" --size-mib "$size_mib")
log "$line"
image_bytes=$(sed -n 's/.*\bbytes=\([0-9]*\).*/\1/p' <<<"$line")
[[ -n $image_bytes ]] || die "kagami-bench image printed no bytes="

log "pushing it into docker-registry"
registry_port=$(free_port)
start_registry
# Without --preserve-digests skopeo would gzip the uncompressed layers on
# the way: the registry would serve other (smaller) blobs than kagami does
# and containerd would have to gunzip them.
skopeo --insecure-policy copy --quiet --preserve-digests --dest-tls-verify=false \
	"docker-archive:$work/image.tar" "docker://127.0.0.1:$registry_port/$repo"
# Fresh, so that its peak RSS is that of serving, not of the push.
stop registry
start_registry

log "starting containerd A and B; importing the image into A"
start_containerd a
start_containerd b
ctr_on a images import --no-unpack "$work/image.tar" >&2

log "starting kagami A and B"
(
	umask 077
	od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$work/psk"
)
start_kagami a
a_addr=$(status a '.listen[0]')
a_id=$(status a .peer_id)
start_kagami b --bootstrap-peer "$a_addr" --mirror docker.io \
	--containerd-config-path "$work/b-certs.d"
until_ok kagami-b "B knowing a routing peer" at_least b .routing_peers 1
until_ok kagami-b "writing hosts.toml" test -s "$work/b-certs.d/docker.io/hosts.toml"
# The tag, the manifest, the config and the layers.
until_ok kagami-a "A advertising the image" at_least a .advertised_keys $((layers + 3))
log "A ($a_id) advertises $(status a .advertised_keys) keys; B holds $(holdings b)"

for ((r = 0; r < repeats; r++)); do
	if ((r % 2 == 0)); then order=(kagami registry); else order=(registry kagami); fi
	log "round $((r + 1))/$repeats: ${order[*]}"
	for source in "${order[@]}"; do pull "$source"; done
done

# Both sources must have served the same config and layers; only the
# manifest may differ (containerd's importer and skopeo each write one).
common=$(comm -12 "$work/content-kagami" "$work/content-registry" | grep -c . || true)
((common >= layers + 1)) || die "the two sources share only $common blobs"
log "B got the same config and layers from both sources ($common blobs in common)"

declare -A rss_of
rss_of[kagami]=$((($(hwm_kib "${pid_of[kagami-a]}") + $(hwm_kib "${pid_of[kagami-b]}")) / 1024))
rss_of[registry]=$(($(hwm_kib "${pid_of[registry]}") / 1024))
ticks_per_second=$(getconf CLK_TCK)
mbps() { awk -v b="$image_bytes" -v s="$1" 'BEGIN { printf "%.0f", b / s / 1e6 }'; }

printf '| source | seconds per round | best s | median s | MB/s at best | MB/s at median | peak RSS MiB | server CPU s per pull |\n'
printf '|---|---|--:|--:|--:|--:|--:|--:|\n'
for source in "${sources[@]}"; do
	# shellcheck disable=SC2086 # one number per word
	read -r best median < <(printf '%s\n' ${seconds_of[$source]} | sort -n |
		awk '{ v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f %.2f\n", v[1], m }')
	# shellcheck disable=SC2086
	cpu=$(printf '%s\n' ${cpu_of[$source]} |
		awk -v hz="$ticks_per_second" '{ t += $1 } END { printf "%.2f", t / hz / NR }')
	rounds=$(sed 's/^ //; s/ /, /g' <<<"${seconds_of[$source]}")
	printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$source" "$rounds" "$best" "$median" \
		"$(mbps "$best")" "$(mbps "$median")" "${rss_of[$source]}" "$cpu"
done
