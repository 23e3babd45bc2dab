//! What unit tests of the services share: a context over a temporary directory, the fake
//! driver and a fresh database, with a `default` dir pool as a fresh berthd has. Needs
//! no root.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::ctx::{Ctx, Locks, Pools};
use crate::db::Db;
use crate::events::Events;
use crate::lxc::fake::Fake;
use crate::model::idmap::HostIds;
use crate::model::limits::Host;
use crate::paths::Paths;

/// A context for a test, the directory it lives in (removed when dropped), and the fake
/// driver behind it.
pub fn ctx() -> (tempfile::TempDir, Arc<Ctx>, Arc<Fake>) {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::new(dir.path().to_owned());
    let db = Db::open(&paths.database()).unwrap();
    std::fs::create_dir_all(paths.containers()).unwrap();
    crate::paths::create_private_dir(&paths.images()).unwrap();
    let fake = Arc::new(Fake::new(&paths.containers()));
    let cx = Ctx {
        db,
        events: Events::new(),
        driver: fake.clone(),
        pools: Pools::default(),
        networks: Default::default(),
        locks: Locks::default(),
        host: Host {
            memory: 8 << 30,
            cpus: 2,
            cgroup_v2: true,
        },
        ids: HostIds {
            uid_base: 1_000_000,
            gid_base: 1_000_000,
            count: 1_000_000_000,
            from_subid: false,
            newuidmap: false,
        },
        image_limits: berth_image::Limits::default(),
        spares: Mutex::new(HashSet::new()),
        busy_volumes: Mutex::new(HashSet::new()),
        starts: Default::default(),
        trust: Default::default(),
        paths,
    };
    crate::storage::apply_defaults(&cx).unwrap();
    crate::storage::load_all(&cx).unwrap();
    (dir, Arc::new(cx), fake)
}
