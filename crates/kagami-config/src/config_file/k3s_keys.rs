//! The keys of K3s's own `config.yaml`, so that kagami can read a K3s
//! node's file unchanged: a key here that is not one of kagami's flags is
//! set aside as [`crate::Ignored`] instead of failing the load.
//!
//! Source: the `k3s server --help` and `k3s agent --help` listings in the
//! K3s CLI reference (docs.k3s.io/cli/server and docs.k3s.io/cli/agent,
//! v1.31/v1.32 era), plus the server-role flags of docs.k3s.io's
//! "Managing Server Roles" page and the deprecated flags those pages still
//! list. Every long flag is a config key (K3s maps `key: value` to
//! `--key=value`). Short aliases (`-t`, `-d`, …) are left out: K3s's docs
//! only ever use long names in config files.

/// K3s server and agent flag names, sorted (checked by a test) so that
/// lookups can binary-search.
pub const K3S_KEYS: &[&str] = &[
    "advertise-address",
    "advertise-port",
    "agent-token",
    "agent-token-file",
    "airgap-extra-registry",
    "alsologtostderr",
    "bind-address",
    "cluster-cidr",
    "cluster-dns",
    "cluster-domain",
    "cluster-init",
    "cluster-reset",
    "cluster-reset-restore-path",
    "cluster-secret",
    "container-runtime-endpoint",
    "data-dir",
    "datastore-cafile",
    "datastore-certfile",
    "datastore-endpoint",
    "datastore-keyfile",
    "debug",
    "default-local-storage-path",
    "default-runtime",
    "disable",
    "disable-agent",
    "disable-apiserver",
    "disable-apiserver-lb",
    "disable-cloud-controller",
    "disable-controller-manager",
    "disable-default-registry-endpoint",
    "disable-etcd",
    "disable-helm-controller",
    "disable-kube-proxy",
    "disable-network-policy",
    "disable-scheduler",
    "docker",
    "egress-selector-mode",
    "embedded-registry",
    "enable-pprof",
    "etcd-arg",
    "etcd-disable-snapshots",
    "etcd-expose-metrics",
    "etcd-s3",
    "etcd-s3-access-key",
    "etcd-s3-bucket",
    "etcd-s3-config-secret",
    "etcd-s3-endpoint",
    "etcd-s3-endpoint-ca",
    "etcd-s3-folder",
    "etcd-s3-insecure",
    "etcd-s3-proxy",
    "etcd-s3-region",
    "etcd-s3-secret-key",
    "etcd-s3-skip-ssl-verify",
    "etcd-s3-timeout",
    "etcd-snapshot-compress",
    "etcd-snapshot-dir",
    "etcd-snapshot-name",
    "etcd-snapshot-retention",
    "etcd-snapshot-schedule-cron",
    "flannel-backend",
    "flannel-cni-conf",
    "flannel-conf",
    "flannel-external-ip",
    "flannel-iface",
    "flannel-ipv6-masq",
    "helm-job-image",
    "https-listen-port",
    "image-credential-provider-bin-dir",
    "image-credential-provider-config",
    "image-service-endpoint",
    "kine-tls",
    "kube-apiserver-arg",
    "kube-cloud-controller-manager-arg",
    "kube-controller-manager-arg",
    "kube-proxy-arg",
    "kube-scheduler-arg",
    "kubelet-arg",
    "lb-server-port",
    "log",
    "multi-cluster-cidr",
    "no-deploy",
    "no-flannel",
    "node-external-dns",
    "node-external-ip",
    "node-internal-dns",
    "node-ip",
    "node-label",
    "node-name",
    "node-taint",
    "nonroot-devices",
    "pause-image",
    "prefer-bundled-bin",
    "private-registry",
    "protect-kernel-defaults",
    "resolv-conf",
    "rootless",
    "secrets-encryption",
    "secrets-encryption-provider",
    "selinux",
    "server",
    "service-cidr",
    "service-node-port-range",
    "servicelb-namespace",
    "snapshotter",
    "supervisor-metrics",
    "system-default-registry",
    "tls-san",
    "tls-san-security",
    "token",
    "token-file",
    "v",
    "vmodule",
    "vpn-auth",
    "vpn-auth-file",
    "with-node-id",
    "write-kubeconfig",
    "write-kubeconfig-group",
    "write-kubeconfig-mode",
];

/// Whether `key` (without a trailing `+`) is one of K3s's config keys.
pub fn is_k3s_key(key: &str) -> bool {
    K3S_KEYS.binary_search(&key).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_unique_so_binary_search_works() {
        for pair in K3S_KEYS.windows(2) {
            assert!(
                pair[0] < pair[1],
                "{:?} must come before {:?}",
                pair[0],
                pair[1]
            );
        }
    }

    #[test]
    fn knows_the_keys_k3s_docs_use() {
        for key in [
            "write-kubeconfig-mode",
            "tls-san",
            "cluster-init",
            "node-label",
            "disable",
        ] {
            assert!(is_k3s_key(key), "{key}");
        }
        assert!(!is_k3s_key("node-labels"));
        assert!(!is_k3s_key("node-label+"));
    }
}
