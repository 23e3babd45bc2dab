//! The event hub behind `/1.0/events`.
//!
//! Every event is serialised once, when sent, and fanned out to the websocket subscribers
//! whose type filter matches. A subscriber that falls too far behind is disconnected, as LXD
//! does, rather than letting it slow the daemon down.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use berth_api::{Event, EventLifecycle, EventLogging, EventType, Operation};
use tokio::sync::broadcast;

/// How many events a slow subscriber may lag behind before it is dropped.
const BACKLOG: usize = 4096;

/// `location` of every event while berth is not clustered.
const LOCATION: &str = "none";

/// One serialised event.
#[derive(Debug)]
pub struct EventMsg {
    pub kind: EventType,
    pub json: String,
    /// The project of the object the event is about.
    pub project: String,
}

/// The hub; cheap to clone.
#[derive(Debug, Clone)]
pub struct Events {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tx: broadcast::Sender<Arc<EventMsg>>,
    logging_listeners: AtomicUsize,
}

/// A live subscription; unsubscribes when dropped.
#[derive(Debug)]
pub struct Subscription {
    pub rx: broadcast::Receiver<Arc<EventMsg>>,
    pub types: Vec<EventType>,
    hub: Events,
}

impl Subscription {
    /// Whether this subscriber wants `msg`.
    pub fn wants(&self, msg: &EventMsg) -> bool {
        self.types.contains(&msg.kind)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.types.contains(&EventType::Logging) {
            self.hub
                .inner
                .logging_listeners
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

impl Events {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(BACKLOG);
        Events {
            inner: Arc::new(Inner {
                tx,
                logging_listeners: AtomicUsize::new(0),
            }),
        }
    }

    /// Subscribes to the given event types.
    pub fn subscribe(&self, types: Vec<EventType>) -> Subscription {
        if types.contains(&EventType::Logging) {
            self.inner.logging_listeners.fetch_add(1, Ordering::Relaxed);
        }
        Subscription {
            rx: self.inner.tx.subscribe(),
            types,
            hub: self.clone(),
        }
    }

    /// Whether anyone listens to `logging` events (checked before formatting a log record).
    pub fn has_logging_listeners(&self) -> bool {
        self.inner.logging_listeners.load(Ordering::Relaxed) > 0
    }

    fn send(&self, kind: EventType, metadata: serde_json::Value) {
        self.send_in(kind, metadata, berth_api::DEFAULT_PROJECT);
    }

    fn send_in(&self, kind: EventType, metadata: serde_json::Value, project: &str) {
        if self.inner.tx.receiver_count() == 0 {
            return;
        }
        let event = Event {
            kind,
            timestamp: crate::time::now_rfc3339(),
            metadata,
            location: LOCATION.to_owned(),
            project: project.to_owned(),
        };
        let Ok(json) = serde_json::to_string(&event) else {
            return;
        };
        let msg = EventMsg {
            kind,
            json,
            project: project.to_owned(),
        };
        // An error only means nobody is subscribed any more.
        let _ = self.inner.tx.send(Arc::new(msg));
    }

    /// A `lifecycle` event: an object was created, updated, deleted, started, …
    pub fn lifecycle(
        &self,
        action: &str,
        source: &str,
        context: Option<serde_json::Map<String, serde_json::Value>>,
    ) {
        let lc = EventLifecycle {
            action: action.to_owned(),
            source: source.to_owned(),
            context,
            requestor: None,
        };
        // The object's project is in its URL (`?project=`) when not `default`.
        let project = source
            .split_once("project=")
            .map_or(berth_api::DEFAULT_PROJECT, |(_, p)| {
                p.split('&').next().unwrap_or_default()
            });
        if let Ok(v) = serde_json::to_value(lc) {
            self.send_in(EventType::Lifecycle, v, project);
        }
    }

    /// An `operation` event: an operation was created or changed. Its project is the one
    /// its resources' URLs name (`?project=`), else `default`.
    pub fn operation(&self, op: &Operation) {
        let project = operation_project(op).to_owned();
        if let Ok(v) = serde_json::to_value(op) {
            self.send_in(EventType::Operation, v, &project);
        }
    }

    /// A `logging` event.
    pub fn logging(&self, log: EventLogging) {
        if let Ok(v) = serde_json::to_value(log) {
            self.send(EventType::Logging, v);
        }
    }
}

/// The project an operation belongs to: the one its resources name (`?project=`),
/// `default` when none does; a token belongs to none (administrators only see it).
pub fn operation_project(op: &Operation) -> &str {
    if op.class == berth_api::OperationClass::Token {
        return "";
    }
    op.resources
        .iter()
        .flat_map(|r| r.values().flatten())
        .find_map(|url| url.split_once("project=").map(|(_, p)| p))
        .map_or(berth_api::DEFAULT_PROJECT, |p| {
            p.split('&').next().unwrap_or_default()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_get_events_and_logging_count_follows() {
        let hub = Events::new();
        assert!(!hub.has_logging_listeners());
        let mut sub = hub.subscribe(vec![EventType::Lifecycle, EventType::Logging]);
        assert!(hub.has_logging_listeners());
        hub.lifecycle("config-updated", "/1.0", None);
        let msg = sub.rx.recv().await.unwrap();
        assert!(sub.wants(&msg));
        let v: serde_json::Value = serde_json::from_str(&msg.json).unwrap();
        assert_eq!(v["type"], "lifecycle");
        assert_eq!(v["metadata"]["action"], "config-updated");
        assert_eq!(v["location"], "none");
        drop(sub);
        assert!(!hub.has_logging_listeners());
    }
}
