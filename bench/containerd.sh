#!/usr/bin/env bash
# Time for containerd on node B to pull and unpack an image through kagami
# from node A, next to the same pull straight from Debian's docker-registry
# holding the same bytes, in one run on one machine; kagami both in plain
# HTTP and with its cluster mTLS.
#
# Two containerds (A and B, each with its own root, state, socket and config
# in a temp dir) and a docker-registry. For each kagami mode, a kagami A on
# containerd A and a kagami B on containerd B, both with `--mirror docker.io
# --embedded-registry`, each writing its hosts.toml into its own directory:
# - plain: two `kagami server --insecure-http` sharing a PSK file, B
#   bootstrapped from A; B's hosts.toml points containerd at http://…/v2.
# - mtls: A a `kagami server` (it makes the cluster CA, PSK and token), B a
#   `kagami agent --server https://A --token TOKEN` (the PSK, certificate and
#   A's P2P addresses come with the join); B's hosts.toml points containerd at
#   https://…/v2 with `ca` and `client` set, and A and B fetch from each
#   other over mTLS.
# Both pairs run side by side (separate P2P networks, separate ports); each
# serves only the pulls that go through its own hosts.toml.
# The image (`kagami-bench image`: 4 uncompressed layers of 64 MiB of
# pseudo-random bytes) is imported into containerd A and pushed into the
# registry unchanged. Then, rotating the order each round, containerd B
# pulls it with `ctr images pull --snapshotter native` once through each
# kagami B (`--hosts-dir`) and once from the registry (`--plain-http`);
# between pulls B's image is removed (`images rm --sync`) and B is checked to
# hold no content and no snapshots, and after each kagami pull that kagami
# B's /debug/p2p must show the image's bytes relayed from its A (and the
# other B none).
#
# Usage: bench/containerd.sh    (from anywhere; needs root for containerd and
#                                to apt-get install what is missing)
# Env:   KAGAMI_TLS=       unset or empty: kagami in both modes; 0: plain
#                          HTTP only; 1: mTLS only
#        REPEATS=6         rounds; each pulls once from each source
#        LAYERS=4 SIZE_MIB=256   the image: layer count, payload in all
#
# Prints progress on stderr and two Markdown tables on stdout (times, and
# CPU per pull by process). Everything it starts listens on 127.0.0.1 (or a
# Unix socket in its temp dir) only and is stopped on exit; its temp dir is
# removed.
set -euo pipefail
# A failing ctr or curl inside $(…) must stop the run too.
shopt -s inherit_errexit

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
repeats=${REPEATS:-6}
layers=${LAYERS:-4}
size_mib=${SIZE_MIB:-256}
case ${KAGAMI_TLS:-} in
"") kagamis=(plain mtls) ;;
0) kagamis=(plain) ;;
1) kagamis=(mtls) ;;
*) printf 'containerd.sh: KAGAMI_TLS is 0, 1 or unset, not %s\n' "$KAGAMI_TLS" >&2 && exit 2 ;;
esac
sources=("${kagamis[@]}" registry)
declare -A label_of=([plain]="kagami, plain HTTP" [mtls]="kagami, mTLS" [registry]=docker-registry)
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

# start_kagami MODE NODE ROLE EXTRA…: `kagami ROLE` named kagami-MODE-NODE
# on NODE's containerd, mirroring docker.io, with its own data and hosts.toml
# directories; MODE plain adds --insecure-http.
start_kagami() {
	local mode=$1 node=$2 role=$3 name=kagami-$1-$2 port p2p scheme=https
	shift 3
	port=$(free_port)
	p2p=$(free_port)
	if [[ $mode == plain ]]; then
		scheme=http
		set -- --insecure-http "$@"
	fi
	data_of[$name]=$work/$name
	certs_of[$name]=$work/$name-certs.d
	url_of[$name]=$scheme://127.0.0.1:$port
	spawn "$name" "$target/release/kagami" --log-level warn "$role" \
		--store containerd --containerd-address "$(sock "$node")" \
		--embedded-registry --mirror docker.io --containerd-config-path "${certs_of[$name]}" \
		--p2p-port "$p2p" --https-listen-port "$port" --bind-address 127.0.0.1 --metrics-address "" \
		--data-dir "${data_of[$name]}" "$@"
	until_ok "$name" "answering /readyz" get "$name" /readyz
}
declare -A url_of data_of certs_of

# get NAME PATH: a GET of PATH on kagami NAME; over HTTPS with NAME's own
# cluster CA and certificate, as its registry API accepts no other client.
get() {
	local name=$1 tls=() dir=${data_of[$1]}/cluster
	if [[ ${url_of[$name]} == https://* ]]; then
		tls=(--cacert "$dir/ca.crt" --cert "$dir/node.crt" --key "$dir/node.key")
	fi
	curl -fsS --max-time 5 "${tls[@]}" "${url_of[$name]}$2"
}

# status NAME [JQ]: kagami NAME's /debug/p2p, or one value of it.
status() { get "$1" /debug/p2p | jq -r "${2:-.}"; }

# relayed_from_a MODE: bytes kagami B of MODE relayed from its A so far.
relayed_from_a() { status "kagami-$1-b" ".bytes_relayed[\"${a_id_of[$1]}\"] // 0"; }
declare -A a_id_of

at_least() { (($(status "$1" "$2") >= $3)); }
exactly() { (($(status "$1" "$2") == $3)); }

# start_pair MODE: kagami A and B of MODE, B knowing A, A advertising the
# image and B's hosts.toml pointing containerd at B.
start_pair() {
	local mode=$1 a=kagami-$1-a b=kagami-$1-b token hosts
	log "starting kagami A and B ($mode)"
	case $mode in
	plain)
		start_kagami plain a server --psk-file "$work/psk"
		start_kagami plain b server --psk-file "$work/psk" --bootstrap-peer "$(status "$a" '.listen[0]')"
		;;
	mtls)
		start_kagami mtls a server
		token=$("$target/release/kagami" --log-level warn token --data-dir "${data_of[$a]}")
		start_kagami mtls b agent --server "${url_of[$a]}" --token "$token"
		;;
	esac
	a_id_of[$mode]=$(status "$a" .peer_id)
	until_ok "$b" "B knowing a routing peer" at_least "$b" .routing_peers 1
	hosts=${certs_of[$b]}/docker.io/hosts.toml
	until_ok "$b" "writing hosts.toml" test -s "$hosts"
	grep -qF "\"${url_of[$b]}/v2\"" "$hosts" || die "$hosts does not name ${url_of[$b]}/v2"
	if [[ $mode == mtls ]]; then
		if ! grep -qE '^\s*ca\s*=' "$hosts" || ! grep -qE '^\s*client\s*=' "$hosts"; then
			die "$hosts sets no ca or no client certificate"
		fi
	fi
	log "B's hosts.toml ($mode):"
	sed 's/^/    /' "$hosts" >&2
	# The tag, the manifest, the config and the layers.
	until_ok "$a" "A advertising the image" at_least "$a" .advertised_keys $((layers + 3))
	log "A (${a_id_of[$mode]}) advertises $(status "$a" .advertised_keys) keys; B holds $(holdings b)"
}

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
# ticks_of PART: CPU ticks so far of a process started here, or for "ctr"
# of this shell's finished children (cutime + cstime): essentially the ctr
# of each pull, which does the pull's HTTP(S) fetching itself.
ticks_of() {
	case $1 in
	ctr) awk '{ print $16 + $17 }' "/proc/$$/stat" ;;
	*) cpu_ticks "${pid_of[$1]}" ;;
	esac
}
# parts_of SOURCE: the processes whose CPU a pull from SOURCE is charged,
# into the array `parts`: the server side, then the client side.
parts_of() {
	case $1 in
	registry) parts=(registry) ;;
	*) parts=("kagami-$1-a" "kagami-$1-b") ;;
	esac
	parts+=(containerd-b ctr)
}
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

reference_of() {
	case $1 in
	registry) echo "127.0.0.1:$registry_port/$repo" ;;
	*) echo "$reference" ;;
	esac
}

pull_flags_of() {
	case $1 in
	registry) echo "--plain-http" ;;
	*) echo "--hosts-dir ${certs_of[kagami-$1-b]}" ;;
	esac
}

# pull SOURCE: one timed pull on B into seconds_of[SOURCE], then removes it.
pull() {
	local source=$1 ref flags socket held mode start end seconds now relayed part i parts
	local -A before_bytes ticks
	ref=$(reference_of "$source")
	flags=$(pull_flags_of "$source")
	socket=$(sock b)
	held=$(holdings b)
	[[ $held == "0 images, 0 blobs, 0 snapshots" ]] || die "B is not empty before a pull: $held"
	for mode in "${kagamis[@]}"; do before_bytes[$mode]=$(relayed_from_a "$mode"); done
	parts_of "$source"
	# ctr's count last here and first after the pull, so that it holds
	# little besides ctr.
	for part in "${parts[@]}"; do ticks[$part]=$(ticks_of "$part"); done
	start=$EPOCHREALTIME
	# shellcheck disable=SC2086 # the flags are words on purpose
	if ! timeout "$pull_timeout" ctr -a "$socket" -n k8s.io images pull \
		$flags --snapshotter native "$ref" >"$work/pull.log" 2>&1; then
		tail -n 20 "$work/pull.log" >&2
		die "ctr pull $ref failed"
	fi
	end=$EPOCHREALTIME
	for ((i = ${#parts[@]} - 1; i >= 0; i--)); do
		part=${parts[i]}
		now=$(ticks_of "$part")
		used_of[$source/$part]+=" $((now - ticks[$part]))"
	done
	seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
	seconds_of[$source]+=" $seconds"
	held=$(holdings b)
	log "${label_of[$source]}: $seconds s ($held on B after the pull)"
	[[ $held == "1 images, $((layers + 2)) blobs, $layers snapshots" ]] ||
		die "B does not hold the unpacked image after pulling from ${label_of[$source]}: $held"
	ctr_on b content ls -q | sort >"$work/content-$source"
	for mode in "${kagamis[@]}"; do
		now=$(relayed_from_a "$mode")
		relayed=$((now - before_bytes[$mode]))
		if [[ $mode == "$source" ]]; then
			((relayed >= image_bytes)) ||
				die "kagami B ($mode) relayed $relayed bytes from A, the image has $image_bytes"
		else
			((relayed == 0)) ||
				die "kagami B ($mode) relayed $relayed bytes from A during a pull from ${label_of[$source]}"
		fi
	done
	ctr_on b images rm --sync "$ref" >/dev/null
	# Every kagami B advertised what B pulled; wait until they have let go
	# of it all, so that the next pull starts from the same quiet state.
	for mode in "${kagamis[@]}"; do
		until_ok "kagami-$mode-b" "B ($mode) withdrawing its keys" exactly "kagami-$mode-b" .advertised_keys 0
	done
}
# used_of[SOURCE/PART]: CPU ticks of PART in each pull from SOURCE.
declare -A seconds_of used_of

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

(
	umask 077
	od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$work/psk"
)
for mode in "${kagamis[@]}"; do start_pair "$mode"; done
log "load average before the pulls: $(cut -d' ' -f1-3 /proc/loadavg)"

for ((r = 0; r < repeats; r++)); do
	# Rotate, so that each source goes first (and last) equally often.
	k=$((r % ${#sources[@]}))
	order=("${sources[@]:k}" "${sources[@]:0:k}")
	log "round $((r + 1))/$repeats: ${order[*]}"
	for source in "${order[@]}"; do pull "$source"; done
done
log "load average after the pulls: $(cut -d' ' -f1-3 /proc/loadavg)"

# Every source must have served the same config and layers; only the
# manifest may differ (containerd's importer and skopeo each write one).
for mode in "${kagamis[@]}"; do
	common=$(comm -12 "$work/content-$mode" "$work/content-registry" | grep -c . || true)
	((common >= layers + 1)) || die "kagami ($mode) and the registry share only $common blobs"
	log "B got the same config and layers through kagami ($mode) and from the registry ($common blobs in common)"
done

declare -A rss_of
for mode in "${kagamis[@]}"; do
	rss_of[$mode]=$((($(hwm_kib "${pid_of[kagami-$mode-a]}") + $(hwm_kib "${pid_of[kagami-$mode-b]}")) / 1024))
done
rss_of[registry]=$(($(hwm_kib "${pid_of[registry]}") / 1024))
ticks_per_second=$(getconf CLK_TCK)
mbps() { awk -v b="$image_bytes" -v s="$1" 'BEGIN { printf "%.0f", b / s / 1e6 }'; }
# mean_seconds TICKS…: the mean of clock-tick counts, in seconds.
mean_seconds() { printf '%s\n' "$@" | awk -v hz="$ticks_per_second" '{ t += $1 } END { printf "%.2f", t / hz / NR }'; }
# cpu SOURCE PART…: the mean CPU seconds per pull from SOURCE of the PARTs
# together.
cpu() {
	local source=$1 part i
	local -a sums=()
	shift
	for part in "$@"; do
		# shellcheck disable=SC2206 # one number per word
		local each=(${used_of[$source/$part]})
		for i in "${!each[@]}"; do sums[i]=$((${sums[i]:-0} + each[i])); done
	done
	mean_seconds "${sums[@]}"
}

printf '| source | seconds per round | best s | median s | MB/s at best | MB/s at median | peak RSS MiB | server CPU s per pull | client CPU s per pull |\n'
printf '|---|---|--:|--:|--:|--:|--:|--:|--:|\n'
for source in "${sources[@]}"; do
	# shellcheck disable=SC2086 # one number per word
	read -r best median < <(printf '%s\n' ${seconds_of[$source]} | sort -n |
		awk '{ v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f %.2f\n", v[1], m }')
	rounds=$(sed 's/^ //; s/ /, /g' <<<"${seconds_of[$source]}")
	parts_of "$source"
	printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${label_of[$source]}" "$rounds" "$best" "$median" \
		"$(mbps "$best")" "$(mbps "$median")" "${rss_of[$source]}" \
		"$(cpu "$source" "${parts[@]:0:${#parts[@]}-2}")" "$(cpu "$source" containerd-b ctr)"
done

printf '\n| CPU s per pull | kagami A or docker-registry | kagami B | containerd B | ctr |\n'
printf '|---|--:|--:|--:|--:|\n'
for source in "${sources[@]}"; do
	case $source in
	registry) serving=$(cpu registry registry) relay=- ;;
	*) serving=$(cpu "$source" "kagami-$source-a") relay=$(cpu "$source" "kagami-$source-b") ;;
	esac
	printf '| %s | %s | %s | %s | %s |\n' "${label_of[$source]}" "$serving" "$relay" \
		"$(cpu "$source" containerd-b)" "$(cpu "$source" ctr)"
done
