//! `GET /1.0/instances`: lists of instances, rendered, filtered and serialised by the
//! instance service's workers.
//!
//! `recursion=2;fields=…` (LXD's `instances_state_selective_recursion`) names the parts of
//! each state wanted: as LXD, `state.network` and `state.disk` are left out unless named,
//! the rest (status, counters) always comes. berth also takes top-level names there
//! (`name`, `status`, `snapshots`, …): then only those keys of each instance are sent (and
//! `state` when a `state.…` part is named), and the state holds only the parts named (see
//! [`query::observation`]; none: the status, pid and start time, see [`Parts`];
//! `state.network`: the interfaces without their counters, kept between lists by
//! [`crate::host::netwatch`]), so that a table of thousands costs neither side what it
//! does not show. LXD's clients name state parts only and get whole instances with their
//! counters.

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
    let observe = query::observation(&parts)?;
    if top.is_empty() {
        // LXD's selection: only the disk and the network are left out.
        return Ok(Selection {
            observe: observe.as_lxd(),
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
    /// berth's selection: the keys sent, and the state's parts.
    keys: Option<(&'l [&'static str], Observe)>,
}

/// An instance's state with only the parts `observe` read: the status, pid, start time
/// (and why it stopped) always.
struct Parts<'l> {
    state: &'l berth_api::instance::InstanceState,
    observe: Observe,
}

impl serde::Serialize for Parts<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (st, how) = (self.state, self.observe);
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("status", &st.status)?;
        m.serialize_entry("status_code", &st.status_code)?;
        m.serialize_entry("pid", &st.pid)?;
        m.serialize_entry("started_at", &st.started_at)?;
        if !st.stop_reason.is_empty() {
            m.serialize_entry("stop_reason", &st.stop_reason)?;
        }
        if how.network {
            m.serialize_entry("network", &st.network)?;
        }
        if how.counters {
            m.serialize_entry("memory", &st.memory)?;
            m.serialize_entry("cpu", &st.cpu)?;
            m.serialize_entry("processes", &st.processes)?;
        }
        m.end()
    }
}

impl serde::Serialize for Full<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let item = self.item;
        let rec = item.rec;
        let keys = self.keys.map_or(FULL_KEYS, |(k, _)| k);
        // Expanded once, and only when sent.
        let expanded = keys
            .iter()
            .any(|k| k.starts_with("expanded_"))
            .then(|| crate::model::expand::expand(item.profiles, rec));
        let mut m = s.serialize_map(Some(keys.len()))?;
        for k in keys {
            match (*k, &expanded) {
                ("name", _) => m.serialize_entry(k, rec.api_name())?,
                ("description", _) => m.serialize_entry(k, &rec.description)?,
                ("status", _) => m.serialize_entry(k, item.status.name())?,
                ("status_code", _) => m.serialize_entry(k, &item.status.code())?,
                ("created_at", _) => m.serialize_entry(k, &rec.created_at)?,
                ("last_used_at", _) => m.serialize_entry(k, &rec.last_used_at)?,
                ("location", _) => m.serialize_entry(k, "none")?,
                ("type", _) => m.serialize_entry(k, "container")?,
                ("project", _) => m.serialize_entry(k, &rec.project)?,
                ("architecture", _) => m.serialize_entry(k, &rec.architecture)?,
                ("ephemeral", _) => m.serialize_entry(k, &rec.ephemeral)?,
                ("stateful", _) => m.serialize_entry(k, &item.stateful)?,
                ("profiles", _) => m.serialize_entry(k, &rec.profiles)?,
                ("config", _) => m.serialize_entry(k, &rec.config)?,
                ("devices", _) => m.serialize_entry(k, &rec.devices)?,
                ("expanded_config", Some((config, _))) => m.serialize_entry(k, config)?,
                ("expanded_devices", Some((_, devices))) => m.serialize_entry(k, devices)?,
                ("state", _) => match self.keys {
                    Some((_, observe)) => m.serialize_entry(
                        k,
                        &Parts {
                            state: self.state,
                            observe,
                        },
                    )?,
                    None => m.serialize_entry(k, self.state)?,
                },
                ("snapshots", _) => {
                    let snaps: Vec<_> = item.snapshots.iter().map(ListedSnapshot::of).collect();
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
    let observe = selection.observe;
    let keys = selection.keys;
    let out = query::list(&st.cx, project, state, move |item| {
        if level == 0 {
            // Filtered names: the filter sees the whole instance.
            let v = serde_json::to_value(item.view()).ok()?;
            if filter.as_ref().is_some_and(|f| !f.matches(&v)) {
                return None;
            }
            return serde_json::value::to_raw_value(&instance_url(&item.rec.name)).ok();
        }
        let whole = |keys| match &item.state {
            Some(state) => serde_json::value::to_raw_value(&Full {
                item: &item,
                state,
                keys,
            }),
            None => serde_json::value::to_raw_value(&item.view()),
        };
        if let Some(f) = &filter {
            // The filter sees the whole instance; the reply has the keys asked for.
            let raw = whole(None).ok()?;
            let v: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
            if !f.matches(&v) {
                return None;
            }
            if keys.is_none() {
                return Some(raw);
            }
        }
        whole(keys.as_deref().map(|k| (k, observe))).ok()
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
        assert!(
            s.observe.network_counters,
            "LXD sends the interfaces' counters"
        );
        let s = sel(&[]).unwrap();
        assert!(!s.observe.network && s.observe.counters && s.keys.is_none());
        // berth's: the parts named only.
        let s = sel(&["name", "state.network"]).unwrap();
        assert!(s.observe.network && !s.observe.counters && !s.observe.network_counters);
        let s = sel(&["name", "state.network.counters"]).unwrap();
        assert!(s.observe.network && s.observe.network_counters);
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
        let rec = crate::model::records::InstanceRecord {
            name: "p1_c1".to_owned(),
            project: "p1".to_owned(),
            architecture: "x86_64".to_owned(),
            description: "one \"quoted\"".to_owned(),
            ephemeral: true,
            profiles: vec!["default".to_owned()],
            config: [("user.a".to_owned(), "1".to_owned())].into(),
            created_at: "2026-01-01T00:00:00Z".to_owned(),
            ..Default::default()
        };
        let profiles = [crate::model::records::ProfileRecord {
            name: "default".to_owned(),
            config: [("user.b".to_owned(), "2".to_owned())].into(),
            ..Default::default()
        }];
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
            profiles: &profiles,
            status: berth_api::StatusCode::Running,
            stateful: false,
            state: None,
            snapshots: &snaps,
        };
        let view = item.view();
        assert_eq!(view.name, "c1");
        assert_eq!(view.expanded_config["user.b"], "2");
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
