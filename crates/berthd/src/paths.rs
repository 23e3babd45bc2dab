//! Where berthd keeps things under its state directory.

use std::path::{Path, PathBuf};

/// Every path berthd uses, derived from its state directory, so that several daemons with
/// different directories run side by side.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
}

impl Paths {
    pub fn new(dir: PathBuf) -> Self {
        Paths { dir }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("unix.socket")
    }

    pub fn lock(&self) -> PathBuf {
        self.dir.join("berthd.pid")
    }

    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }

    pub fn log_file(&self) -> PathBuf {
        self.logs().join("berthd.log")
    }

    pub fn database(&self) -> PathBuf {
        self.dir.join("database")
    }

    pub fn images(&self) -> PathBuf {
        self.dir.join("images")
    }

    /// The LXC path: one directory per container (config, logs).
    pub fn containers(&self) -> PathBuf {
        self.dir.join("containers")
    }

    /// The host nodes of containers' unix devices, one directory per container. It and
    /// those directories are 0711: a container's root binds its nodes from there.
    pub fn devices(&self) -> PathBuf {
        self.dir.join("devices")
    }

    /// The backup files of instance `name` (its host-wide name).
    pub fn backups(&self, name: &str) -> PathBuf {
        self.dir.join("backups").join("instances").join(name)
    }

    /// The file of backup `backup` of instance `name`.
    pub fn backup(&self, name: &str, backup: &str) -> PathBuf {
        self.backups(name).join(backup)
    }

    /// A container's runtime directory: LXC config, seccomp policy, logs.
    pub fn container(&self, name: &str) -> PathBuf {
        self.containers().join(name)
    }

    /// Where the host nodes of a container's unix devices are made.
    pub fn nodes(&self, name: &str) -> PathBuf {
        self.devices().join(name)
    }

    pub fn storage_pools(&self) -> PathBuf {
        self.dir.join("storage-pools")
    }

    /// Where a pool lives when its config names no `source`.
    pub fn default_pool_source(&self, pool: &str) -> PathBuf {
        self.storage_pools().join(pool)
    }

    /// The managed networks' directories (dnsmasq's files), one per network.
    pub fn networks(&self) -> PathBuf {
        self.dir.join("networks")
    }

    /// This daemon's id on the host: 8 hex digits of a hash of its state directory. Names
    /// that are global to the host (an nftables table) carry it, so two daemons with
    /// different directories never collide; its containers' cgroup is `berth.ID`.
    pub fn daemon_id(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.dir.to_string_lossy().as_bytes());
        berth_image::hex(&digest[..4])
    }

    /// Where berthd's own lxcfs is mounted when the host runs none.
    pub fn lxcfs(&self) -> PathBuf {
        self.dir.join("lxcfs")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Creates `dir` (and parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}
