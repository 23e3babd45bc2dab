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

/// Replaces file `path` with `data` (mode 0600): written to a new file of a name of its
/// own beside it (`O_EXCL`: never through a link someone planted), then renamed over
/// `path` (which replaces a link there rather than following it). Not synced: what it
/// writes is derived from the database (a `backup.yaml`), and each change rewrites it;
/// the rename leaves the old file or the new one.
pub fn replace_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", uuid::Uuid::new_v4()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Reads regular file `path`, at most `limit` bytes: never through a link at its end,
/// never blocking on a pipe, refusing anything but a regular file or a larger one (what
/// berthd reads as root from a volume a container or an import may have shaped).
pub fn read_small_file(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let fd = rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY
            | rustix::fs::OFlags::NOFOLLOW
            | rustix::fs::OFlags::NONBLOCK
            | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is not a regular file", path.display()),
        ));
    }
    if st.st_size as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is larger than {limit} bytes", path.display()),
        ));
    }
    let mut out = Vec::new();
    std::fs::File::from(fd).take(limit).read_to_end(&mut out)?;
    Ok(out)
}
