//! The operations registry: background tasks, websocket sessions and tokens.
//!
//! ```text
//!   start() ──► Running ──► Success
//!                  │  └───► Failure (err set)
//!                  └─ cancel() ──► Cancelled     (only where may_cancel)
//!   finished operations stay listed for EXPIRY, then disappear
//! ```
//!
//! Each change of an operation is sent as an `operation` event. A websocket operation hands
//! out one secret per stream (`fds`); `GET /1.0/operations/{id}/websocket?secret=S` delivers
//! the upgraded socket to the running task through [`OpCtx::accept`].

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::ws::WebSocket;
use berth_api::{Operation, OperationClass, StatusCode};
use tokio::sync::{Notify, mpsc, watch};

use crate::events::Events;

/// How long a finished operation stays visible, as in LXD.
pub const EXPIRY: Duration = Duration::from_secs(5);

type Map = serde_json::Map<String, serde_json::Value>;

/// Why an operation could not be cancelled.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("This operation can't be cancelled")]
    NotCancellable,
    #[error("Only running operations can be cancelled")]
    NotRunning,
}

/// Why a websocket could not be attached to an operation.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("Operation is not a websocket operation")]
    NotWebsocket,
    #[error("Invalid websocket secret")]
    BadSecret,
    #[error("Websocket already connected")]
    AlreadyConnected,
    #[error("Operation is no longer running")]
    Gone,
}

/// What to create.
#[derive(Debug)]
pub struct OpSpec {
    pub class: OperationClass,
    pub description: String,
    pub resources: Option<BTreeMap<String, Vec<String>>>,
    pub may_cancel: bool,
    pub metadata: Map,
    /// For websocket operations: the names of the streams (`"0"`, `"control"`, …).
    pub fds: Vec<String>,
    /// The streams' secrets go in the metadata itself (a migration's `{"control": S,
    /// "fs": S}`), not under `fds` (exec's, console's).
    pub fds_at_top: bool,
}

impl OpSpec {
    /// A task about `resources` (`("instances", URL)`, …).
    pub fn task(description: &str, resources: &[(&str, String)]) -> Self {
        let mut by_kind: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (kind, url) in resources {
            by_kind
                .entry((*kind).to_owned())
                .or_default()
                .push(url.clone());
        }
        OpSpec {
            class: OperationClass::Task,
            description: description.to_owned(),
            resources: (!by_kind.is_empty()).then_some(by_kind),
            may_cancel: false,
            metadata: Map::new(),
            fds: vec![],
            fds_at_top: false,
        }
    }
}

/// The registry; cheap to clone.
#[derive(Debug, Clone)]
pub struct Operations {
    inner: Arc<Registry>,
}

#[derive(Debug)]
struct Registry {
    ops: Mutex<HashMap<String, Arc<Op>>>,
    events: Events,
    finished: Notify,
}

/// One operation.
#[derive(Debug)]
pub struct Op {
    id: String,
    class: OperationClass,
    description: String,
    created_at: String,
    resources: Option<BTreeMap<String, Vec<String>>>,
    may_cancel: bool,
    state: Mutex<OpState>,
    status: watch::Sender<StatusCode>,
    cancel: watch::Sender<bool>,
    /// secret → (fd name, connected yet)
    secrets: Mutex<HashMap<String, (String, bool)>>,
    sockets: Option<mpsc::Sender<(String, WebSocket)>>,
    /// A token operation redeemed (tokens are single use).
    taken: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct OpState {
    status: StatusCode,
    updated_at: String,
    metadata: Map,
    err: String,
}

/// What the operation's task gets: its metadata, cancellation and websockets.
#[derive(Debug)]
pub struct OpCtx {
    op: Arc<Op>,
    events: Events,
    sockets: Option<mpsc::Receiver<(String, WebSocket)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these short locks leaves consistent data behind.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn new_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl Operations {
    pub fn new(events: Events) -> Self {
        Operations {
            inner: Arc::new(Registry {
                ops: Mutex::new(HashMap::new()),
                events,
                finished: Notify::new(),
            }),
        }
    }

    /// Registers an operation and runs `task` for it in the background.
    pub fn start<F, Fut>(&self, mut spec: OpSpec, task: F) -> Arc<Op>
    where
        F: FnOnce(OpCtx) -> Fut + Send + 'static,
        Fut: Future<Output = crate::error::Result<()>> + Send + 'static,
    {
        let now = crate::time::now_rfc3339();
        let mut secrets = HashMap::new();
        let (sockets_tx, sockets_rx) = if spec.class == OperationClass::Websocket {
            let mut fds = Map::new();
            for fd in &spec.fds {
                let secret = new_secret();
                fds.insert(fd.clone(), serde_json::Value::String(secret.clone()));
                secrets.insert(secret, (fd.clone(), false));
            }
            if spec.fds_at_top {
                spec.metadata.extend(fds);
            } else {
                spec.metadata
                    .insert("fds".to_owned(), serde_json::Value::Object(fds));
            }
            let (tx, rx) = mpsc::channel(spec.fds.len().max(1));
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let op = Arc::new(Op {
            id: uuid::Uuid::new_v4().to_string(),
            class: spec.class,
            description: spec.description,
            created_at: now.clone(),
            resources: spec.resources,
            may_cancel: spec.may_cancel,
            state: Mutex::new(OpState {
                status: StatusCode::Running,
                updated_at: now,
                metadata: spec.metadata,
                err: String::new(),
            }),
            status: watch::channel(StatusCode::Running).0,
            cancel: watch::channel(false).0,
            secrets: Mutex::new(secrets),
            sockets: sockets_tx,
            taken: std::sync::atomic::AtomicBool::new(false),
        });
        lock(&self.inner.ops).insert(op.id.clone(), op.clone());
        self.inner.events.operation(&op.render());

        let ctx = OpCtx {
            op: op.clone(),
            events: self.inner.events.clone(),
            sockets: sockets_rx,
        };
        let mut cancelled = op.cancel.subscribe();
        let registry = self.clone();
        let run = op.clone();
        tokio::spawn(async move {
            let fut = task(ctx);
            let result = tokio::select! {
                r = fut => Some(r),
                _ = cancelled.wait_for(|c| *c) => None,
            };
            let (status, err) = match result {
                Some(Ok(())) => (StatusCode::Success, String::new()),
                Some(Err(e)) => {
                    if e.kind() == crate::error::Kind::Internal {
                        tracing::error!(operation = %run.id, error = %crate::error::chain(&e), "Operation failed");
                    }
                    (StatusCode::Failure, e.to_string())
                }
                None => (StatusCode::Cancelled, String::new()),
            };
            registry.finish(&run, status, err);
        });
        op
    }

    fn finish(&self, op: &Arc<Op>, status: StatusCode, err: String) {
        {
            let mut st = lock(&op.state);
            st.status = status;
            st.err = err;
            st.updated_at = crate::time::now_rfc3339();
        }
        // Nobody may connect to a finished operation.
        lock(&op.secrets).clear();
        self.inner.events.operation(&op.render());
        op.status.send_replace(status);
        self.inner.finished.notify_waiters();
        let registry = self.clone();
        let id = op.id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(EXPIRY).await;
            lock(&registry.inner.ops).remove(&id);
        });
    }

    pub fn get(&self, id: &str) -> Option<Arc<Op>> {
        lock(&self.inner.ops).get(id).cloned()
    }

    /// All operations, oldest first.
    pub fn list(&self) -> Vec<Arc<Op>> {
        let mut ops: Vec<_> = lock(&self.inner.ops).values().cloned().collect();
        ops.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        ops
    }

    fn running(&self) -> Vec<Arc<Op>> {
        self.list()
            .into_iter()
            .filter(|o| !o.status().is_final())
            .collect()
    }

    /// Whether work is under way: a running operation other than a token (tokens wait
    /// for a client, not for berthd, and do not outlive it).
    fn busy(&self) -> bool {
        self.running()
            .iter()
            .any(|o| o.class != OperationClass::Token)
    }

    /// Waits until no operation but tokens runs or `timeout` passes; returns whether
    /// all finished.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.finished.notified();
            if !self.busy() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return !self.busy();
            }
        }
    }

    /// Cancels every running operation, cancellable or not (daemon shutdown).
    pub fn cancel_all(&self) {
        for op in self.running() {
            op.cancel.send_replace(true);
        }
    }
}

impl Op {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn status(&self) -> StatusCode {
        lock(&self.state).status
    }

    pub fn class(&self) -> OperationClass {
        self.class
    }

    /// The operation's metadata as it is now.
    pub fn metadata(&self) -> Map {
        lock(&self.state).metadata.clone()
    }

    /// Redeems a running token operation: true once, for the first caller, who then
    /// cancels it.
    pub fn take_token(&self) -> bool {
        self.class == OperationClass::Token
            && !self.status().is_final()
            && !self.taken.swap(true, std::sync::atomic::Ordering::AcqRel)
    }

    /// The operation as the API shows it.
    pub fn render(&self) -> Operation {
        let st = lock(&self.state);
        Operation {
            id: self.id.clone(),
            class: self.class,
            description: self.description.clone(),
            created_at: self.created_at.clone(),
            updated_at: st.updated_at.clone(),
            status: st.status.name().to_owned(),
            status_code: st.status,
            resources: self.resources.clone(),
            metadata: Some(st.metadata.clone()),
            may_cancel: self.may_cancel,
            err: st.err.clone(),
            location: "none".to_owned(),
        }
    }

    /// Waits until the operation finishes or `timeout` passes; returns its status then.
    pub async fn wait(&self, timeout: Option<Duration>) -> StatusCode {
        let mut rx = self.status.subscribe();
        let done = rx.wait_for(|s| s.is_final());
        match timeout {
            Some(t) => {
                let _ = tokio::time::timeout(t, done).await;
            }
            None => {
                let _ = done.await;
            }
        }
        self.status()
    }

    /// Asks a cancellable running operation to stop.
    pub fn cancel(&self) -> Result<(), CancelError> {
        if self.status().is_final() {
            return Err(CancelError::NotRunning);
        }
        if !self.may_cancel {
            return Err(CancelError::NotCancellable);
        }
        self.cancel.send_replace(true);
        Ok(())
    }

    /// Checks a websocket secret and claims its stream; returns the stream's name.
    pub fn claim_secret(&self, secret: &str) -> Result<String, ConnectError> {
        if self.class != OperationClass::Websocket {
            return Err(ConnectError::NotWebsocket);
        }
        let mut secrets = lock(&self.secrets);
        match secrets.get_mut(secret) {
            None if self.status().is_final() => Err(ConnectError::Gone),
            None => Err(ConnectError::BadSecret),
            Some((_, true)) => Err(ConnectError::AlreadyConnected),
            Some((fd, connected)) => {
                *connected = true;
                Ok(fd.clone())
            }
        }
    }

    /// Hands an upgraded websocket for stream `fd` to the operation's task.
    pub async fn deliver(&self, fd: String, socket: WebSocket) -> Result<(), ConnectError> {
        let tx = self.sockets.as_ref().ok_or(ConnectError::NotWebsocket)?;
        tx.send((fd, socket)).await.map_err(|_| ConnectError::Gone)
    }
}

impl OpCtx {
    /// Replaces the operation's metadata and tells subscribers.
    pub fn set_metadata(&self, metadata: Map) {
        set_metadata(&self.op, &self.events, metadata);
    }

    /// What sets the operation's metadata, for a task's progress reports.
    pub fn metadata_setter(&self) -> impl Fn(Map) + Send + Sync + 'static {
        let (op, events) = (self.op.clone(), self.events.clone());
        move |metadata| set_metadata(&op, &events, metadata)
    }

    /// Waits for the next websocket a client connects, with the name of its stream.
    pub async fn accept(&mut self) -> Option<(String, WebSocket)> {
        self.sockets.as_mut()?.recv().await
    }
}

fn set_metadata(op: &Op, events: &Events, metadata: Map) {
    {
        let mut st = lock(&op.state);
        st.metadata = metadata;
        st.updated_at = crate::time::now_rfc3339();
    }
    events.operation(&op.render());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(may_cancel: bool) -> OpSpec {
        OpSpec {
            class: OperationClass::Task,
            description: "test".to_owned(),
            resources: None,
            may_cancel,
            metadata: Map::new(),
            fds: vec![],
            fds_at_top: false,
        }
    }

    #[tokio::test]
    async fn task_success_and_failure() {
        let ops = Operations::new(Events::new());
        let ok = ops.start(spec(false), |_| async { Ok(()) });
        let bad = ops.start(spec(false), |_| async {
            Err(crate::error::Failure::invalid("boom"))
        });
        assert_eq!(ok.wait(None).await, StatusCode::Success);
        assert_eq!(bad.wait(None).await, StatusCode::Failure);
        assert_eq!(bad.render().err, "boom");
        assert!(ops.wait_idle(Duration::from_secs(1)).await);
    }

    #[tokio::test]
    async fn cancel_only_where_allowed() {
        let ops = Operations::new(Events::new());
        let forever = || async {
            std::future::pending::<()>().await;
            Ok(())
        };
        let fixed = ops.start(spec(false), move |_| forever());
        assert!(matches!(fixed.cancel(), Err(CancelError::NotCancellable)));
        let op = ops.start(spec(true), move |_| forever());
        op.cancel().unwrap();
        assert_eq!(
            op.wait(Some(Duration::from_secs(5))).await,
            StatusCode::Cancelled
        );
        assert!(matches!(op.cancel(), Err(CancelError::NotRunning)));
        assert_eq!(
            fixed.wait(Some(Duration::from_millis(10))).await,
            StatusCode::Running
        );
        ops.cancel_all();
        assert_eq!(
            fixed.wait(Some(Duration::from_secs(5))).await,
            StatusCode::Cancelled
        );
    }
}
