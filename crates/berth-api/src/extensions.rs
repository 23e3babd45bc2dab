//! The API extensions berth advertises in `GET /1.0`.
//!
//! Clients discover features only through this list, so it names only what really works.
//! It is append-only: an extension, once advertised, stays.

/// Every extension berth implements, in the order they were added.
pub const API_EXTENSIONS: &[&str] = &[
    // Issue 2: the API core.
    "etag",
    "patch",
    "resources",
    "resources_v2",
    "resources_system",
    "resources_load",
    "projects",
    "warnings",
    "event_lifecycle",
    "event_location",
    "event_project",
    "operation_location",
    "api_os",
    // Issue 3: images and storage pools.
    "storage",
    // Issue 4: instances.
    "instances",
    "container_full",
    "instance_create_start",
    "api_filtering",
    "instance_get_full",
    "container_exec_recording",
    // Issue 5: files, SFTP, console.
    "directory_manipulation",
    "file_delete",
    "file_append",
    "file_symlinks",
    "file_get_symlink",
    "instance_file_head",
    "console",
    // Issue 6: configuration.
    "metadata_configuration",
    // Issue 15: networks.
    "network",
    "network_state",
    "network_leases",
    "network_state_bond_bridge",
    "instance_nic_network",
    "proxy",
    "proxy_unix",
    "proxy_udp",
    "proxy_unix_dac_properties",
    "proxy_tcp_udp_multi_port_handling",
    "proxy_nat",
    "proxy_haproxy_protocol",
    // Issue 17: HTTPS, the trust store and trust tokens.
    "certificate_update",
    "certificate_project",
    "certificate_token",
    "remote_token_expiry",
    "certificate_description",
    // Issue 17: copy and move between hosts (stateless, rsync).
    "container_push",
    "container_push_target",
    "container_only_migration",
    // Issue 17: `copy --refresh` between hosts.
    "container_incremental_copy",
    // Issue 18: custom volumes, their snapshots, copies and moves on one server.
    "storage_api_local_volume_handling",
    "storage_api_volume_rename",
    "storage_api_volume_snapshots",
    "storage_api_project",
    "storage_volume_state",
    "storage_volume_project_move",
    "custom_volume_snapshot_expiry",
    "storage_shifted",
    // Issue 18: instance backups, exported and imported as streams.
    "container_backup",
    "backup_compression",
    "backup_compression_algorithm",
    "container_backup_override_pool",
    "backup_override_name",
    "direct_backup",
    // Issue 16: lists of thousands.
    "instances_state_selective_recursion",
];

/// Whether `name` is advertised.
pub fn has(name: &str) -> bool {
    API_EXTENSIONS.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_duplicates() {
        let mut seen = std::collections::HashSet::new();
        for e in API_EXTENSIONS {
            assert!(seen.insert(*e), "{e} listed twice");
        }
        assert!(has("etag"));
    }
}
