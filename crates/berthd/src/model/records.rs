//! What berthd stores: one plain struct per object, as the database rows hold them.
//!
//! An instance's `name` is its host-wide name (see [`super::names`]), so containers,
//! volumes and cgroups of different projects never collide; the API shows
//! [`InstanceRecord::api_name`].

use std::collections::BTreeMap;

use berth_api::image::Image;
use berth_api::instance::Device;

/// A stored instance.
#[derive(Debug, Clone, Default)]
pub struct InstanceRecord {
    /// The host-wide name; [`InstanceRecord::api_name`] is the name the API shows.
    pub name: String,
    pub project: String,
    pub architecture: String,
    pub description: String,
    pub ephemeral: bool,
    pub profiles: Vec<String>,
    pub config: BTreeMap<String, String>,
    pub devices: BTreeMap<String, Device>,
    pub created_at: String,
    pub last_used_at: String,
}

impl InstanceRecord {
    /// The instance's name within its project.
    pub fn api_name(&self) -> &str {
        super::names::api_name(&self.name)
    }

    /// Its `volatile.uuid`: which instance this is, whatever its name.
    pub fn uuid(&self) -> &str {
        self.config.get("volatile.uuid").map_or("", String::as_str)
    }
}

/// A stored profile.
#[derive(Debug, Clone, Default)]
pub struct ProfileRecord {
    pub project: String,
    pub name: String,
    pub description: String,
    pub config: BTreeMap<String, String>,
    pub devices: BTreeMap<String, Device>,
}

/// A stored project.
#[derive(Debug, Clone, Default)]
pub struct ProjectRecord {
    pub name: String,
    pub description: String,
    pub config: BTreeMap<String, String>,
}

impl ProjectRecord {
    /// Whether `key` is `true`.
    pub fn flag(&self, key: &str) -> bool {
        self.config.get(key).is_some_and(|v| v == "true")
    }

    /// The project whose profiles this project's instances use.
    pub fn profiles_project(&self) -> &str {
        if self.flag("features.profiles") {
            &self.name
        } else {
            berth_api::DEFAULT_PROJECT
        }
    }

    /// The project whose images this project's requests and instances use.
    pub fn images_project(&self) -> &str {
        if self.flag("features.images") {
            &self.name
        } else {
            berth_api::DEFAULT_PROJECT
        }
    }

    /// The project holding this project's custom storage volumes.
    pub fn volumes_project(&self) -> &str {
        if self.flag("features.storage.volumes") {
            &self.name
        } else {
            berth_api::DEFAULT_PROJECT
        }
    }

    /// Whether `restricted=true`.
    pub fn restricted(&self) -> bool {
        self.flag("restricted")
    }
}

/// A stored snapshot: its instance's configuration at that moment (the files are on
/// the pool).
#[derive(Debug, Clone, Default)]
pub struct SnapshotRecord {
    /// The instance's host-wide name.
    pub instance: String,
    pub name: String,
    pub description: String,
    pub architecture: String,
    pub ephemeral: bool,
    pub stateful: bool,
    pub profiles: Vec<String>,
    pub config: BTreeMap<String, String>,
    pub devices: BTreeMap<String, Device>,
    pub created_at: String,
    pub expires_at: String,
}

/// An image row, with what the API does not show.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    pub image: Image,
    /// Whether the rootfs is a separate file (`<fp>.rootfs`).
    pub split: bool,
    /// The image's metadata.yaml, as JSON.
    pub metadata: String,
}

/// A stored storage pool.
#[derive(Debug, Clone)]
pub struct PoolRecord {
    pub name: String,
    pub driver: String,
    pub description: String,
    pub config: BTreeMap<String, String>,
}

/// A stored volume: an instance's root volume or a custom volume.
#[derive(Debug, Clone, Default)]
pub struct VolumeRecord {
    pub pool: String,
    /// The project holding it.
    pub project: String,
    /// Its type's API name (`custom`, `container`).
    pub kind: String,
    /// Its host-wide name, as on disk: `PROJECT_NAME` for a custom volume, an
    /// instance's host-wide name for its root volume.
    pub name: String,
    pub description: String,
    pub config: BTreeMap<String, String>,
    pub created_at: String,
}

impl VolumeRecord {
    /// Its name within its project: a custom volume's host-wide name always carries its
    /// project (`PROJECT_NAME`, as in Incus), an instance's only outside `default`.
    pub fn api_name(&self) -> &str {
        self.name
            .strip_prefix(&self.project)
            .and_then(|n| n.strip_prefix('_'))
            .filter(|_| self.kind == "custom" || self.project != berth_api::DEFAULT_PROJECT)
            .unwrap_or(&self.name)
    }

    /// Its URL (`?project=` outside `default`).
    pub fn url(&self) -> String {
        super::names::with_project(
            &format!(
                "/1.0/storage-pools/{}/volumes/{}/{}",
                self.pool,
                self.kind,
                self.api_name()
            ),
            &self.project,
        )
    }
}

/// A stored snapshot of a custom volume.
#[derive(Debug, Clone, Default)]
pub struct VolumeSnapshotRecord {
    pub pool: String,
    /// The volume's host-wide name.
    pub volume: String,
    pub name: String,
    pub description: String,
    /// The volume's configuration when it was taken.
    pub config: BTreeMap<String, String>,
    pub created_at: String,
    pub expires_at: String,
}

/// A stored instance backup (its file: [`crate::paths::Paths::backup`]).
#[derive(Debug, Clone, Default)]
pub struct BackupRecord {
    /// The instance's host-wide name.
    pub instance: String,
    pub name: String,
    pub created_at: String,
    pub expires_at: String,
    pub instance_only: bool,
    pub optimized_storage: bool,
    pub compression_algorithm: String,
}

/// A stored managed network.
#[derive(Debug, Clone, Default)]
pub struct NetworkRecord {
    pub name: String,
    /// Its driver (`bridge`).
    pub kind: String,
    pub description: String,
    /// The effective configuration (`auto` resolved).
    pub config: BTreeMap<String, String>,
}
