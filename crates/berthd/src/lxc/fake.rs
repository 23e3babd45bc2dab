//! A fake instance driver for unit tests: containers are entries in memory, started and
//! stopped at once, with failures injected on demand. It records what it was asked, so
//! tests assert on the driver calls a service made (and that nothing is left running).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_api::StatusCode;
use berth_api::instance::InstanceState;

use super::{BoxFuture, InstanceDriver, MountSpec, Observe, StartSpec};
use crate::error::{Failure, Result};

/// One fake container.
#[derive(Debug, Clone)]
pub struct FakeContainer {
    pub status: StatusCode,
    /// The spec of its last start.
    pub spec: Option<StartSpec>,
    /// Cgroup files written live: file → value.
    pub cgroup: BTreeMap<String, String>,
}

/// The fake driver.
#[derive(Debug)]
pub struct Fake {
    lxcpath: PathBuf,
    containers: Mutex<BTreeMap<String, FakeContainer>>,
    /// The next `start` of this container fails.
    fail_start: Mutex<Option<String>>,
    /// What is mounted into containers, by target path.
    mounts: Mutex<std::collections::BTreeSet<String>>,
    /// A mount at this target fails.
    fail_mount: Mutex<Option<String>>,
}

impl Fake {
    /// A fake whose runtime directories live under `lxcpath`.
    pub fn new(lxcpath: &Path) -> Self {
        Fake {
            lxcpath: lxcpath.to_owned(),
            containers: Mutex::new(BTreeMap::new()),
            fail_start: Mutex::new(None),
            mounts: Mutex::new(std::collections::BTreeSet::new()),
            fail_mount: Mutex::new(None),
        }
    }

    /// Makes mounts at `target` fail.
    pub fn fail_mount_at(&self, target: &str) {
        *self.fail_mount.lock().unwrap() = Some(target.to_owned());
    }

    /// The targets mounted into containers now.
    pub fn mounts(&self) -> Vec<String> {
        self.mounts.lock().unwrap().iter().cloned().collect()
    }

    /// Makes the next start of `name` fail.
    pub fn fail_next_start(&self, name: &str) {
        *self.fail_start.lock().unwrap() = Some(name.to_owned());
    }

    /// The container `name`, if the driver knows it.
    pub fn container(&self, name: &str) -> Option<FakeContainer> {
        self.containers.lock().unwrap().get(name).cloned()
    }

    /// The names of the containers that run (or are frozen).
    pub fn running(&self) -> Vec<String> {
        self.containers
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, c)| c.status != StatusCode::Stopped)
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn with<R>(&self, name: &str, f: impl FnOnce(&mut FakeContainer) -> R) -> R {
        let mut all = self.containers.lock().unwrap();
        let c = all.entry(name.to_owned()).or_insert(FakeContainer {
            status: StatusCode::Stopped,
            spec: None,
            cgroup: BTreeMap::new(),
        });
        f(c)
    }

    fn start_now(&self, spec: &StartSpec) -> Result<()> {
        let fail = self.fail_start.lock().unwrap().take_if(|n| *n == spec.name);
        if fail.is_some() {
            return Err(Failure::internal("Failed to start the instance: injected"));
        }
        self.with(&spec.name, |c| {
            if c.status != StatusCode::Stopped {
                return Err(Failure::conflict("already running"));
            }
            c.status = StatusCode::Running;
            c.spec = Some(spec.clone());
            Ok(())
        })
    }
}

impl InstanceDriver for Fake {
    fn status(&self, name: &str) -> (StatusCode, Option<i32>) {
        let status = self.with(name, |c| c.status);
        // A running fake's init is this process: what is read of it in /proc exists.
        let pid = i32::try_from(std::process::id()).unwrap_or(1);
        (status, (status != StatusCode::Stopped).then_some(pid))
    }

    fn observe(&self, name: &str, _how: Observe) -> InstanceState {
        let (status, pid) = self.status(name);
        InstanceState {
            status: status.name().to_owned(),
            status_code: status.code(),
            pid: i64::from(pid.unwrap_or(0)),
            ..Default::default()
        }
    }

    fn create(&self, name: &str) -> Result<()> {
        std::fs::create_dir_all(self.lxcpath.join(name))
            .map_err(|e| Failure::failed("Failed to create the runtime dir", e))
    }

    fn start<'a>(&'a self, spec: &'a StartSpec) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.start_now(spec) })
    }

    fn restore<'a>(&'a self, spec: &'a StartSpec) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.start_now(spec) })
    }

    fn stop<'a>(&'a self, name: &'a str, _timeout: i64, _force: bool) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.with(name, |c| c.status = StatusCode::Stopped);
            Ok(())
        })
    }

    fn checkpoint<'a>(&'a self, name: &'a str, stop: bool) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if stop {
                self.with(name, |c| c.status = StatusCode::Stopped);
            }
            Ok(())
        })
    }

    fn migration_dump<'a>(
        &'a self,
        _name: &'a str,
        _dumped: tokio::sync::oneshot::Sender<PathBuf>,
        _verdict: tokio::sync::oneshot::Receiver<bool>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Err(Failure::invalid("The fake driver cannot migrate live")) })
    }

    fn release(&self, _name: &str) {}

    fn cleanup(&self, _name: &str, _keep_console: bool) {}

    fn is_frozen(&self, name: &str) -> bool {
        self.with(name, |c| c.status == StatusCode::Frozen)
    }

    fn set_frozen(&self, name: &str, frozen: bool) -> Result<()> {
        self.with(name, |c| {
            c.status = if frozen {
                StatusCode::Frozen
            } else {
                StatusCode::Running
            };
        });
        Ok(())
    }

    fn set_cgroup(&self, name: &str, _controller: &str, file: &str, value: &str) -> Result<()> {
        self.with(name, |c| c.cgroup.insert(file.to_owned(), value.to_owned()));
        Ok(())
    }

    fn mount<'a>(&'a self, spec: &'a MountSpec) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if self.fail_mount.lock().unwrap().as_deref() == Some(spec.target.as_str()) {
                return Err(Failure::internal(format!(
                    "Failed to mount at {}",
                    spec.target
                )));
            }
            let mut mounts = self.mounts.lock().unwrap();
            if spec.remove || spec.source.is_none() {
                mounts.remove(&spec.target);
            } else {
                mounts.insert(spec.target.clone());
            }
            Ok(())
        })
    }

    fn device_rule<'a>(
        &'a self,
        _name: &'a str,
        _key: &'static str,
        _rule: String,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        let mut all = self.containers.lock().unwrap();
        if let Some(c) = all.remove(from) {
            all.insert(to.to_owned(), c);
        }
        let old = self.lxcpath.join(from);
        if old.exists() {
            std::fs::rename(&old, self.lxcpath.join(to))
                .map_err(|e| Failure::failed("Failed to rename the runtime dir", e))?;
        }
        Ok(())
    }

    fn delete(&self, name: &str) {
        self.containers.lock().unwrap().remove(name);
        let _ = std::fs::remove_dir_all(self.lxcpath.join(name));
    }

    fn lxcpath(&self) -> &Path {
        &self.lxcpath
    }
}
