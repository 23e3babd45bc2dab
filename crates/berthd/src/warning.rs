//! Warnings the server raises about itself or one of its objects (a network that cannot
//! start, a host firewall that drops its traffic), shown by `GET /1.0/warnings`.
//!
//! A warning is one row per type and object: raising it again counts it and updates its
//! message, and a resolved one becomes new again; an acknowledged one stays acknowledged.
//! Rows survive restarts, so a user's acknowledgement does too.

use berth_api::warning::Warning;

use crate::ctx::Ctx;
use crate::error::{Failure, Result};

/// The statuses a user may set.
const STATUSES: &[&str] = &["new", "acknowledged", "resolved"];

/// Raises (or counts again) the warning of `kind` about `entity_url`.
pub fn raise(cx: &Ctx, kind: &str, entity_url: &str, severity: &str, message: &str) {
    let result = cx.db.write_sync(|tx| {
        let now = crate::time::now_rfc3339();
        let w = match crate::db::warnings::find(tx, kind, entity_url)? {
            Some(w) => Warning {
                count: w.count + 1,
                status: if w.status == "resolved" {
                    "new".to_owned()
                } else {
                    w.status.clone()
                },
                last_seen_at: now,
                last_message: message.to_owned(),
                ..w
            },
            None => Warning {
                uuid: uuid::Uuid::new_v4().to_string(),
                location: "none".to_owned(),
                project: berth_api::DEFAULT_PROJECT.to_owned(),
                kind: kind.to_owned(),
                count: 1,
                first_seen_at: now.clone(),
                last_seen_at: now,
                last_message: message.to_owned(),
                severity: severity.to_owned(),
                status: "new".to_owned(),
                entity_url: entity_url.to_owned(),
            },
        };
        crate::db::warnings::put(tx, &w)
    });
    match result {
        Ok(()) => tracing::warn!(warning = %kind, entity = %entity_url, "{message}"),
        Err(e) => tracing::error!(error = %crate::error::chain(&e), "Warning not recorded"),
    }
}

/// Marks the warning of `kind` about `entity_url` resolved, if one is open.
pub fn resolve(cx: &Ctx, kind: &str, entity_url: &str) {
    let result = cx.db.write_sync(|tx| -> Result<(), crate::db::DbError> {
        if let Some(mut w) = crate::db::warnings::find(tx, kind, entity_url)?
            && w.status != "resolved"
        {
            w.status = "resolved".to_owned();
            crate::db::warnings::put(tx, &w)?;
        }
        Ok(())
    });
    if let Err(e) = result {
        tracing::error!(error = %crate::error::chain(&e), "Warning not updated");
    }
}

/// Every warning.
pub async fn list(cx: &Ctx) -> Result<Vec<Warning>> {
    Ok(cx.db.read(crate::db::warnings::list).await?)
}

/// Warning `uuid`.
pub async fn get(cx: &Ctx, uuid: &str) -> Result<Warning> {
    let u = uuid.to_owned();
    cx.db
        .read(move |c| crate::db::warnings::get(c, &u))
        .await?
        .ok_or_else(|| Failure::not_found("Warning not found"))
}

/// Sets a warning's status (`acknowledged`, say).
pub async fn set_status(cx: &Ctx, uuid: &str, status: &str) -> Result<()> {
    if !STATUSES.contains(&status) {
        return Err(Failure::invalid(format!(
            "Invalid value {status:?} for \"status\": expected one of {}",
            STATUSES.join(", ")
        )));
    }
    let mut w = get(cx, uuid).await?;
    w.status = status.to_owned();
    cx.db
        .write(move |tx| crate::db::warnings::put(tx, &w))
        .await?;
    Ok(())
}

/// Deletes a warning.
pub async fn delete(cx: &Ctx, uuid: &str) -> Result<()> {
    get(cx, uuid).await?;
    let u = uuid.to_owned();
    cx.db
        .write(move |tx| crate::db::warnings::delete(tx, &u))
        .await?;
    Ok(())
}
