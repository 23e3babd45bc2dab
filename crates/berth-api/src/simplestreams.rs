//! Simplestreams image trees, as `images.linuxcontainers.org` and berthd's own
//! `/streams/v1/` serve them: `streams/v1/index.json` names the products files
//! (`datatype: image-downloads`), each product holds dated versions, each version its
//! files (`items`). [`images`] reads a products file as LXD's and Incus's clients do: one
//! container image per unified tarball (`incus_combined.tar.gz`, `lxd_combined.tar.gz`,
//! fingerprint = its SHA-256) and per metadata tarball paired with a rootfs (`incus.tar.xz`
//! or `lxd.tar.xz` with `squashfs` or `root.tar.xz`, fingerprint = the metadata item's
//! `combined_*_sha256`), with the short (`debian/12`, host architecture only) and medium
//! (`debian/12/amd64`) aliases those clients derive from a product's `aliases`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::image::{Image, ImageAliasRef};

/// `streams/v1/index.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stream {
    pub index: BTreeMap<String, StreamIndex>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub updated: String,
    pub format: String,
}

/// One products file named by the index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamIndex {
    pub datatype: String,
    pub path: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub updated: String,
    pub products: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub format: String,
}

/// A products file (`streams/v1/images.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Products {
    pub content_id: String,
    pub datatype: String,
    pub format: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub updated: String,
    pub products: BTreeMap<String, Product>,
}

/// One product: a distribution release, architecture and variant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Product {
    /// Comma-separated alias names.
    pub aliases: String,
    /// Debian's name (`amd64`) or the kernel's (`x86_64`).
    pub arch: String,
    pub os: String,
    pub release: String,
    pub release_title: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub variant: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub supported_eol: String,
    /// Keyed by `YYYYMMDD_HH:MM`.
    pub versions: BTreeMap<String, Version>,
}

/// One build of a product.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Version {
    pub items: BTreeMap<String, Item>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub label: String,
}

/// One file of a version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Item {
    pub ftype: String,
    /// Relative to the tree's root URL.
    pub path: String,
    pub sha256: String,
    pub size: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub combined_sha256: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub combined_rootxz_sha256: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub combined_squashfs_sha256: String,
}

/// The `ftype`s of a unified tarball, as Incus and LXD name it.
pub const COMBINED: [&str; 2] = ["incus_combined.tar.gz", "lxd_combined.tar.gz"];
/// The `ftype`s of a split image's metadata tarball.
pub const METADATA: [&str; 2] = ["incus.tar.xz", "lxd.tar.xz"];

/// A file to fetch for an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

/// A container image a tree offers: as `GET /1.0/images/FP` would show it, and its files
/// (the metadata or unified tarball, then the rootfs of a split image).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamImage {
    pub image: Image,
    pub meta: File,
    pub rootfs: Option<File>,
}

/// The kernel's name of a simplestreams architecture (`amd64` → `x86_64`), or `None` for
/// one berth does not know.
pub fn kernel_arch(arch: &str) -> Option<&'static str> {
    Some(match arch {
        "amd64" | "x86_64" => "x86_64",
        "arm64" | "aarch64" => "aarch64",
        "i386" | "i686" => "i686",
        "armhf" | "armv7l" => "armv7l",
        "ppc64el" | "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "loong64" | "loongarch64" => "loongarch64",
        _ => return None,
    })
}

/// This host's architecture as the kernel names it (`uname -m`), from Rust's name.
pub fn local_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86" => "i686",
        "arm" => "armv7l",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Debian's name of a kernel architecture (`x86_64` → `amd64`), as trees name products.
pub fn debian_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "i686" => "i386",
        "armv7l" => "armhf",
        "ppc64le" => "ppc64el",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// The container images of `products`, newest first, with their aliases as the clients
/// derive them for a host of architecture `local` (the kernel's name).
pub fn images(products: &Products, local: &str) -> Vec<StreamImage> {
    let mut out: Vec<StreamImage> = Vec::new();
    let mut alias_lists: Vec<Vec<String>> = Vec::new();
    for product in products.products.values() {
        let Some(arch) = kernel_arch(&product.arch) else {
            continue;
        };
        for (name, version) in &product.versions {
            let Some(created) = version_date(name) else {
                continue;
            };
            let mut add = |meta: &Item, rootfs: Option<&Item>| {
                let fingerprint = fingerprint(meta, rootfs);
                if fingerprint.is_empty()
                    || meta.path.is_empty()
                    || out.iter().any(|i| i.image.fingerprint == fingerprint)
                {
                    return;
                }
                out.push(StreamImage {
                    image: Image {
                        fingerprint,
                        ..image_of(product, version, name, &created, arch, meta, rootfs)
                    },
                    meta: file(meta),
                    rootfs: rootfs.map(file),
                });
                alias_lists.push(
                    product
                        .aliases
                        .split(',')
                        .map(str::trim)
                        .filter(|a| !a.is_empty())
                        .map(str::to_owned)
                        .collect(),
                );
            };
            for item in version.items.values() {
                if COMBINED.contains(&item.ftype.as_str()) {
                    add(item, None);
                } else if METADATA.contains(&item.ftype.as_str()) {
                    for root in version.items.values() {
                        if matches!(root.ftype.as_str(), "squashfs" | "root.tar.xz") {
                            add(item, Some(root));
                        }
                    }
                }
            }
        }
    }
    // As the clients sort them: by os, release, variant, then newest first, then
    // architecture, then squashfs before root.tar.xz; an alias goes to the first image
    // that claims it.
    let mut order: Vec<usize> = (0..out.len()).collect();
    order.sort_by(|a, b| {
        let (x, y) = (&out[*a].image.properties, &out[*b].image.properties);
        let mut by = std::cmp::Ordering::Equal;
        for key in ["os", "release", "variant", "serial", "architecture"] {
            let (p, q) = (
                x.get(key).map_or("", String::as_str),
                y.get(key).map_or("", String::as_str),
            );
            by = match (p.is_empty(), q.is_empty()) {
                _ if p == q => continue,
                (true, _) => std::cmp::Ordering::Greater,
                (_, true) => std::cmp::Ordering::Less,
                _ if key == "serial" => q.cmp(p),
                _ => p.cmp(q),
            };
            break;
        }
        let rank = |t: Option<&String>| match t.map(String::as_str) {
            Some("squashfs") => 0,
            Some("root.tar.xz") => 1,
            _ => 2,
        };
        by.then_with(|| rank(x.get("type")).cmp(&rank(y.get("type"))))
    });
    let mut taken: Vec<(String, String)> = Vec::new();
    let mut sorted = Vec::with_capacity(out.len());
    for i in order {
        let mut img = out[i].clone();
        let product_arch = img
            .image
            .properties
            .get("architecture")
            .cloned()
            .unwrap_or_default();
        for alias in &alias_lists[i] {
            for (name, shown) in [
                (alias.clone(), img.image.architecture == local),
                (format!("{alias}/{product_arch}"), true),
            ] {
                let key = (name.clone(), img.image.architecture.clone());
                if taken.contains(&key) {
                    continue;
                }
                taken.push(key);
                if shown {
                    img.image.aliases.push(ImageAliasRef {
                        name,
                        description: String::new(),
                    });
                }
            }
        }
        sorted.push(img);
    }
    sorted
}

/// The image `name` names among `images`: an alias (for the local architecture first),
/// else a unique fingerprint prefix.
pub fn find<'a>(images: &'a [StreamImage], name: &str) -> Option<&'a StreamImage> {
    if let Some(i) = images
        .iter()
        .find(|i| i.image.aliases.iter().any(|a| a.name == name))
    {
        return Some(i);
    }
    let prefix = name.to_ascii_lowercase();
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut found = images
        .iter()
        .filter(|i| i.image.fingerprint.starts_with(&prefix));
    match (found.next(), found.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
}

/// An image's fingerprint: a unified tarball's own hash, or the hash of a metadata
/// tarball and rootfs together as the metadata item records it.
fn fingerprint(meta: &Item, rootfs: Option<&Item>) -> String {
    match rootfs.map(|r| r.ftype.as_str()) {
        None => meta.sha256.clone(),
        Some("squashfs") => meta.combined_squashfs_sha256.clone(),
        Some(_) if !meta.combined_rootxz_sha256.is_empty() => meta.combined_rootxz_sha256.clone(),
        Some(_) => meta.combined_sha256.clone(),
    }
}

fn file(item: &Item) -> File {
    File {
        path: item.path.clone(),
        sha256: item.sha256.clone(),
        size: item.size,
    }
}

/// `YYYYMMDD…` as an RFC 3339 date at midnight UTC.
fn version_date(name: &str) -> Option<String> {
    let d = name.get(..8)?;
    if !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (y, m, day) = (&d[..4], &d[4..6], &d[6..]);
    if !("01"..="12").contains(&m) || !("01"..="31").contains(&day) {
        return None;
    }
    Some(format!("{y}-{m}-{day}T00:00:00Z"))
}

fn image_of(
    product: &Product,
    version: &Version,
    serial: &str,
    created: &str,
    arch: &str,
    meta: &Item,
    rootfs: Option<&Item>,
) -> Image {
    let mut description = format!("{} {} {}", product.os, product.release_title, product.arch);
    if !product.variant.is_empty() && product.variant != "default" {
        description.push_str(&format!(" ({})", product.variant));
    }
    if !version.label.is_empty() {
        description.push_str(&format!(" ({})", version.label));
    }
    description.push_str(&format!(" ({serial})"));
    let properties: BTreeMap<String, String> = [
        ("os", product.os.as_str()),
        ("release", product.release.as_str()),
        ("version", product.version.as_str()),
        ("architecture", product.arch.as_str()),
        ("label", version.label.as_str()),
        ("serial", serial),
        ("description", description.as_str()),
        ("variant", product.variant.as_str()),
        ("type", rootfs.map_or("tar.gz", |r| r.ftype.as_str())),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let filename = meta.path.rsplit('/').next().unwrap_or_default().to_owned();
    Image {
        architecture: arch.to_owned(),
        public: true,
        size: meta.size + rootfs.map_or(0, |r| r.size),
        created_at: created.to_owned(),
        uploaded_at: created.to_owned(),
        expires_at: if product.supported_eol.len() == 10 {
            format!("{}T00:00:00Z", product.supported_eol)
        } else {
            "1970-01-01T00:00:00Z".to_owned()
        },
        filename,
        properties,
        kind: "container".to_owned(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(ftype: &str, path: &str, sha: &str) -> Item {
        Item {
            ftype: ftype.into(),
            path: path.into(),
            sha256: sha.into(),
            size: 10,
            ..Default::default()
        }
    }

    fn tree() -> Products {
        let mut meta = item("incus.tar.xz", "images/d/12/incus.tar.xz", "aa");
        meta.combined_squashfs_sha256 = "c1".into();
        meta.combined_rootxz_sha256 = "c2".into();
        let old = Version {
            items: [
                ("incus.tar.xz".into(), meta.clone()),
                (
                    "root.squashfs".into(),
                    item("squashfs", "images/d/12/rootfs.squashfs", "bb"),
                ),
            ]
            .into(),
            label: String::new(),
        };
        let mut new_meta = meta;
        new_meta.combined_squashfs_sha256 = "d1".into();
        new_meta.combined_rootxz_sha256 = "d2".into();
        let new = Version {
            items: [
                ("incus.tar.xz".into(), new_meta),
                (
                    "root.tar.xz".into(),
                    item("root.tar.xz", "images/d/12/root.tar.xz", "cc"),
                ),
                (
                    "root.squashfs".into(),
                    item("squashfs", "images/d/12/rootfs.squashfs", "dd"),
                ),
            ]
            .into(),
            label: String::new(),
        };
        let busybox = Version {
            items: [
                (
                    "incus_combined.tar.gz".into(),
                    item("incus_combined.tar.gz", "files/ee", "ee"),
                ),
                (
                    "lxd_combined.tar.gz".into(),
                    item("lxd_combined.tar.gz", "files/ee", "ee"),
                ),
            ]
            .into(),
            label: String::new(),
        };
        let mut products = Products::default();
        products.products.insert(
            "debian:12:amd64:default".into(),
            Product {
                aliases: "debian/12,debian/bookworm".into(),
                arch: "amd64".into(),
                os: "Debian".into(),
                release: "bookworm".into(),
                release_title: "12".into(),
                variant: "default".into(),
                versions: [
                    ("20261201_05:24".into(), old),
                    ("20261205_05:24".into(), new),
                ]
                .into(),
                ..Default::default()
            },
        );
        products.products.insert(
            "debian:12:arm64:default".into(),
            Product {
                aliases: "debian/12".into(),
                arch: "arm64".into(),
                versions: [("20261205_05:24".into(), Version::default())].into(),
                ..Default::default()
            },
        );
        products.products.insert(
            "busybox:1:x86_64:default".into(),
            Product {
                aliases: "bb".into(),
                arch: "x86_64".into(),
                versions: [("20261206_10:00".into(), busybox)].into(),
                ..Default::default()
            },
        );
        products
    }

    #[test]
    fn images_pair_files_and_take_aliases_newest_first() {
        let imgs = images(&tree(), "x86_64");
        let fps: Vec<&str> = imgs.iter().map(|i| i.image.fingerprint.as_str()).collect();
        // By os (none last), newest build first, squashfs before root.tar.xz; the unified
        // tarball once (two ftypes, one file).
        assert_eq!(fps, ["d1", "d2", "c1", "ee"]);
        let names = |fp: &str| -> Vec<String> {
            find(&imgs, fp)
                .unwrap()
                .image
                .aliases
                .iter()
                .map(|a| a.name.clone())
                .collect()
        };
        assert_eq!(
            names("d1"),
            [
                "debian/12",
                "debian/12/amd64",
                "debian/bookworm",
                "debian/bookworm/amd64"
            ]
        );
        assert!(names("d2").is_empty() && names("c1").is_empty());
        assert_eq!(names("ee"), ["bb", "bb/x86_64"]);
        assert_eq!(find(&imgs, "debian/12").unwrap().image.fingerprint, "d1");
        let d2 = find(&imgs, "d2").unwrap();
        assert_eq!(d2.rootfs.as_ref().unwrap().path, "images/d/12/root.tar.xz");
        assert_eq!(d2.image.properties["type"], "root.tar.xz");
        assert_eq!(d2.image.created_at, "2026-12-05T00:00:00Z");
        assert_eq!(d2.image.size, 20);
        assert_eq!(
            local_arch(),
            std::env::consts::ARCH.replace("powerpc64", "ppc64le")
        );
        // On another architecture the short alias is not this image's.
        let arm = images(&tree(), "aarch64");
        assert!(find(&arm, "debian/12").is_none());
        assert!(find(&arm, "debian/12/amd64").is_some());
        assert!(find(&imgs, "nothing").is_none());
    }
}
