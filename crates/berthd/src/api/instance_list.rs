//! `GET /1.0/instances`: lists of instances, rendered, filtered and serialised by the
//! instance service's workers.
//!
//! `recursion=2;fields=…` (LXD's `instances_state_selective_recursion`) names the parts of
//! each state wanted: as LXD, `state.network` and `state.disk` are left out unless named,
//! the rest (status, counters) always comes. berth also takes top-level names there
//! (`name`, `status`, `snapshots`, …): then only those keys of each instance are sent (and
//! `state` when a `state.…` part is named), and the state holds only the parts named (see
//! [`query::observation`]; none: the status, pid and start time), so that a table of
//! thousands costs neither side what it does not show. LXD's clients name state parts only
//! and get whole instances with their counters.

use axum::extract::{RawQuery, State};
use serde::ser::SerializeMap;

use berth_api::instance::FULL_KEYS;

use super::instances::ListedSnapshot;
use super::{ApiError, ApiResult, AppState, project_param, query_value, recursion_fields, sync};
use crate::instance::query::{self, Listed};
use crate::lxc::Observe;
use crate::model::names::instance_url;

/// What `fields=` selects.
#[derive(Debug, PartialEq)]
struct Selection {
    /// What each state holds.
    observe: Observe,
    /// The top-level keys sent, in [`FULL_KEYS`]' order; `None`: all.
    keys: Option<Vec<&'static str>>,
}

fn selection(fields: Option<&[String]>) -> Result<Selection, ApiError> {
    let Some(fields) = fields else {
        return Ok(Selection {
            observe: Observe::FULL,
            keys: None,
        });
    };
    let (parts, top): (Vec<String>, Vec<String>) = fields
        .iter()
        .cloned()
        .partition(|f| f.starts_with("state."));
    let mut observe = query::observation(&parts)?;
    if top.is_empty() {
        // LXD's selection: only the disk and the network are left out.
        observe.counters = true;
        return Ok(Selection {
            observe,
            keys: None,
        });
    }
    for t in &top {
        if !FULL_KEYS.contains(&t.as_str()) {
            return Err(ApiError::bad_request(format!(
                "Invalid field {t:?} in parameter \"recursion\": not a field of an instance"
            )));
        }
    }
    let wanted = |k: &&str| top.iter().any(|t| t == k) || (*k == "state" && !parts.is_empty());
    Ok(Selection {
        observe,
        keys: Some(FULL_KEYS.iter().copied().filter(wanted).collect()),
    })
}

/// One instance of a list with its state, snapshots and backups (`recursion=2`), its keys
/// written as they are (a list of a thousand builds no JSON tree in between): all of them,
/// or those of `keys`.
struct Full<'l, 'a> {
    item: &'l Listed<'a>,
    state: &'l berth_api::instance::InstanceState,
    keys: Option<&'l [&'static str]>,
}

impl serde::Serialize for Full<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = &self.item.view;
        let keys = self.keys.unwrap_or(FULL_KEYS);
        let mut m = s.serialize_map(Some(keys.len()))?;
        for k in keys {
            match *k {
                "name" => m.serialize_entry(k, &v.name)?,
                "description" => m.serialize_entry(k, &v.description)?,
                "status" => m.serialize_entry(k, &v.status)?,
                "status_code" => m.serialize_entry(k, &v.status_code)?,
                "created_at" => m.serialize_entry(k, &v.created_at)?,
                "last_used_at" => m.serialize_entry(k, &v.last_used_at)?,
                "location" => m.serialize_entry(k, &v.location)?,
                "type" => m.serialize_entry(k, &v.kind)?,
                "project" => m.serialize_entry(k, &v.project)?,
                "architecture" => m.serialize_entry(k, &v.architecture)?,
                "ephemeral" => m.serialize_entry(k, &v.ephemeral)?,
                "stateful" => m.serialize_entry(k, &v.stateful)?,
                "profiles" => m.serialize_entry(k, &v.profiles)?,
                "config" => m.serialize_entry(k, &v.config)?,
                "devices" => m.serialize_entry(k, &v.devices)?,
                "expanded_config" => m.serialize_entry(k, &v.expanded_config)?,
                "expanded_devices" => m.serialize_entry(k, &v.expanded_devices)?,
                "state" => m.serialize_entry(k, self.state)?,
                "snapshots" => {
                    let snaps: Vec<_> =
                        self.item.snapshots.iter().map(ListedSnapshot::of).collect();
                    m.serialize_entry(k, &snaps)?;
                }
                _ => m.serialize_entry(k, &[(); 0])?,
            }
        }
        m.end()
    }
}

/// `GET /1.0/instances`: `?project=` lists that project's instances, `all-projects=true`
/// every project's; `filter` as LXD's; `recursion=2;fields=…` as above.
pub async fn list(State(st): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let (level, fields) = recursion_fields(q.as_deref())?;
    let selection = selection(fields.as_deref())?;
    let filter = match query_value(q.as_deref(), "filter") {
        Some(f) if !f.trim().is_empty() => Some(
            super::filter::parse(&f)
                .map_err(|e| ApiError::bad_request(format!("Invalid filter: {e}")))?,
        ),
        _ => None,
    };
    let every = query_value(q.as_deref(), "all-projects").is_some_and(|v| v == "true");
    let project = (!every).then(|| project_param(q.as_deref()));
    if level == 0 && filter.is_none() {
        let names = query::names(&st.cx, project.as_deref()).await?;
        return Ok(sync(
            names.iter().map(|n| instance_url(n)).collect::<Vec<_>>(),
        ));
    }
    let state = (level >= 2).then_some(selection.observe);
    let keys = selection.keys;
    let out = query::list(&st.cx, project, state, move |item| {
        if level == 0 {
            // Filtered names: the filter sees the whole instance.
            let v = serde_json::to_value(&item.view).ok()?;
            if filter.as_ref().is_some_and(|f| !f.matches(&v)) {
                return None;
            }
            return serde_json::value::to_raw_value(&instance_url(&item.rec.name)).ok();
        }
        let raw = match &item.state {
            Some(state) => serde_json::value::to_raw_value(&Full {
                item: &item,
                state,
                keys: None,
            }),
            None => serde_json::value::to_raw_value(&item.view),
        }
        .ok()?;
        if let Some(f) = &filter {
            // The filter sees the whole instance; the reply has the keys asked for.
            let v: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
            if !f.matches(&v) {
                return None;
            }
        }
        match (&item.state, keys.as_deref()) {
            (Some(state), Some(keys)) => serde_json::value::to_raw_value(&Full {
                item: &item,
                state,
                keys: Some(keys),
            })
            .ok(),
            _ => Some(raw),
        }
    })
    .await?;
    Ok(sync(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(fields: &[&str]) -> Result<Selection, ApiError> {
        let f: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
        selection(Some(&f))
    }

    #[test]
    fn fields_select_state_parts_and_keys() {
        assert_eq!(selection(None).unwrap().observe, Observe::FULL);
        // LXD's names: whole instances, the counters always.
        let s = sel(&["state.network"]).unwrap();
        assert!(s.observe.network && s.observe.counters && s.keys.is_none());
        let s = sel(&[]).unwrap();
        assert!(!s.observe.network && s.observe.counters && s.keys.is_none());
        // berth's: the parts named only.
        let s = sel(&["name", "state.network"]).unwrap();
        assert!(s.observe.network && !s.observe.counters);
        let s = sel(&["name", "state.memory", "state.disk"]).unwrap();
        assert!(!s.observe.network && s.observe.counters);
        let s = sel(&["snapshots", "name", "state.network", "type"]).unwrap();
        assert_eq!(s.keys.unwrap(), ["name", "type", "state", "snapshots"]);
        let s = sel(&["name", "state"]).unwrap();
        assert_eq!(s.observe, Observe::STATUS);
        assert_eq!(s.keys.unwrap(), ["name", "state"]);
        assert!(sel(&["state.bogus"]).is_err());
        assert!(sel(&["bogus"]).is_err());
    }

    #[test]
    fn whole_instances_are_written_as_derived() {
        // What the list wrote before it selected: LXD's clients get the same bytes.
        #[derive(serde::Serialize)]
        struct Derived<'a> {
            #[serde(flatten)]
            view: &'a berth_api::instance::Instance,
            state: &'a berth_api::instance::InstanceState,
            snapshots: Vec<ListedSnapshot<'a>>,
            backups: [(); 0],
        }
        let rec = crate::model::records::InstanceRecord::default();
        let view = berth_api::instance::Instance {
            name: "c1".to_owned(),
            config: [("user.a".to_owned(), "1".to_owned())].into(),
            ..Default::default()
        };
        let state = berth_api::instance::InstanceState {
            status: "Running".to_owned(),
            pid: 7,
            ..Default::default()
        };
        let snaps = vec![crate::model::records::SnapshotRecord {
            name: "s1".to_owned(),
            ..Default::default()
        }];
        let item = Listed {
            rec: &rec,
            view: view.clone(),
            state: None,
            snapshots: &snaps,
        };
        let ours = serde_json::to_string(&Full {
            item: &item,
            state: &state,
            keys: None,
        })
        .unwrap();
        let derived = serde_json::to_string(&Derived {
            view: &view,
            state: &state,
            snapshots: snaps.iter().map(ListedSnapshot::of).collect(),
            backups: [],
        })
        .unwrap();
        assert_eq!(ours, derived);
    }
}
