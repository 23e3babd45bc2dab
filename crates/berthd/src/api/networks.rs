//! `/1.0/networks`: managed networks and the host's interfaces, their state and leases
//! (see [`crate::network`]).

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use berth_api::network::{
    Network, NetworkLease, NetworkPost, NetworkPut, NetworkState, NetworkStateAddress,
    NetworkStateBridge, NetworkStateCounters, NetworksPost,
};

use super::{
    ApiResult, AppState, Json, etag_of, if_match, project_param, recursion, sync, sync_created,
    sync_empty, sync_etag,
};
use crate::model::records::NetworkRecord;
use crate::network::{self, NewNetwork, View};

fn render(v: View, used_by: Vec<String>) -> Network {
    Network {
        name: v.rec.name,
        description: v.rec.description,
        kind: v.rec.kind,
        managed: v.managed,
        status: v.status,
        config: v.rec.config,
        used_by,
        locations: if v.managed {
            vec!["none".to_owned()]
        } else {
            vec![]
        },
        project: berth_api::DEFAULT_PROJECT.to_owned(),
    }
}

fn etag(n: &NetworkRecord) -> String {
    etag_of(&(&n.name, &n.description, &n.config))
}

/// `GET /1.0/networks`.
pub async fn list(State(st): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let all = network::list(&st.cx).await?;
    if recursion(q.as_deref())? == 0 {
        return Ok(sync(
            all.iter()
                .map(|v| network::url(&v.rec.name))
                .collect::<Vec<_>>(),
        ));
    }
    let mut out = Vec::with_capacity(all.len());
    for v in all {
        let used_by = network::used_by(&st.cx, &v.rec.name).await?;
        out.push(render(v, used_by));
    }
    Ok(sync(out))
}

/// `POST /1.0/networks`.
pub async fn post(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    Json(req): Json<NetworksPost>,
) -> ApiResult {
    let name = req.name.clone();
    network::create(
        &st.cx,
        &project_param(q.as_deref()),
        NewNetwork {
            name: req.name,
            kind: req.kind,
            description: req.description,
            config: req.config,
        },
    )
    .await?;
    Ok(sync_created(&network::url(&name)))
}

/// `GET /1.0/networks/{name}`.
pub async fn get(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let v = network::get(&st.cx, &name).await?;
    let used_by = network::used_by(&st.cx, &name).await?;
    let etag = etag(&v.rec);
    Ok(sync_etag(render(v, used_by), &etag))
}

/// `PUT /1.0/networks/{name}`.
pub async fn put(
    State(st): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    Json(req): Json<NetworkPut>,
) -> ApiResult {
    let project = project_param(q.as_deref());
    network::update(&st.cx, &project, &name, if_match(&headers, etag), req, true).await?;
    Ok(sync_empty())
}

/// `PATCH /1.0/networks/{name}`.
pub async fn patch(
    State(st): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    Json(req): Json<NetworkPut>,
) -> ApiResult {
    let project = project_param(q.as_deref());
    network::update(
        &st.cx,
        &project,
        &name,
        if_match(&headers, etag),
        req,
        false,
    )
    .await?;
    Ok(sync_empty())
}

/// `POST /1.0/networks/{name}`: a rename.
pub async fn rename(
    State(st): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    Json(req): Json<NetworkPost>,
) -> ApiResult {
    network::rename(&st.cx, &project_param(q.as_deref()), &name, &req.name).await?;
    Ok(sync_created(&network::url(&req.name)))
}

/// `DELETE /1.0/networks/{name}`.
pub async fn delete(
    State(st): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    network::delete(&st.cx, &project_param(q.as_deref()), &name).await?;
    Ok(sync_empty())
}

/// `GET /1.0/networks/{name}/state`.
pub async fn state(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let v = network::get(&st.cx, &name).await?;
    let s = network::state(&st.cx, &name).await?;
    let bridge = (v.rec.kind == "bridge").then(|| NetworkStateBridge {
        id: String::new(),
        stp: false,
        forward_delay: 1500,
        vlan_default: 1,
        vlan_filtering: false,
        upper_devices: s.upper_devices.clone(),
    });
    Ok(sync(NetworkState {
        addresses: s
            .addresses
            .into_iter()
            .map(|a| NetworkStateAddress {
                family: a.family,
                address: a.address,
                netmask: a.netmask,
                scope: a.scope,
            })
            .collect(),
        counters: NetworkStateCounters {
            bytes_received: s.bytes_received,
            bytes_sent: s.bytes_sent,
            packets_received: s.packets_received,
            packets_sent: s.packets_sent,
        },
        hwaddr: s.hwaddr,
        mtu: u64::from(s.mtu),
        state: s.state,
        kind: if v.rec.kind == "loopback" {
            "loopback".to_owned()
        } else {
            "broadcast".to_owned()
        },
        bond: None,
        bridge,
        vlan: None,
    }))
}

/// `GET /1.0/networks/{name}/leases`.
pub async fn leases(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let leases = network::leases(&st.cx, &name).await?;
    Ok(sync(
        leases
            .into_iter()
            .map(|l| NetworkLease {
                hostname: l.hostname,
                hwaddr: l.hwaddr,
                address: l.address,
                kind: l.kind,
                location: "none".to_owned(),
                project: berth_api::DEFAULT_PROJECT.to_owned(),
            })
            .collect::<Vec<_>>(),
    ))
}
