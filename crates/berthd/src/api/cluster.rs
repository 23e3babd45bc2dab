//! `GET /1.0/cluster`: berth is not clustered.

use berth_api::cluster::Cluster;

/// `GET /1.0/cluster`.
pub async fn get() -> axum::response::Response {
    super::sync(Cluster {
        server_name: String::new(),
        enabled: false,
        member_config: vec![],
    })
}
