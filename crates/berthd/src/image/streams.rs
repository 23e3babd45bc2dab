//! berthd's public images as a simplestreams tree (`/streams/v1/index.json`,
//! `/streams/v1/images.json`, the files under `/streams/v1/files/FP/`), so that LXD's and
//! Incus's clients and other berthd add a berthd as a `--protocol simplestreams` remote.
//!
//! Each public image of the `default` project is one product of one version (its own
//! aliases are the product's: an alias names one image, not "the newest of a release").
//! A unified tarball is offered as `incus_combined.tar.gz` and `lxd_combined.tar.gz`, the
//! ftypes each client reads; a split image as its metadata tarball (`incus.tar.xz` and
//! `lxd.tar.xz`) and its rootfs (`squashfs` or `root.tar.xz`), with the combined hash
//! recorded under the name each rootfs type uses. The files' own hashes are computed once
//! per image and kept (images do not change).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use berth_api::simplestreams::{
    COMBINED, Item, METADATA, Product, Products, Stream, StreamIndex, Version,
};

use crate::ctx::Ctx;
use crate::error::{Failure, Result};
use crate::model::records::ImageRecord;

/// Where a tree's products file is, relative to its root.
const PRODUCTS_PATH: &str = "streams/v1/images.json";

/// A file of a served image: its metadata (or unified) tarball, or its rootfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Meta,
    Rootfs,
}

impl Part {
    /// The part a URL's last component names.
    pub fn parse(name: &str) -> Option<Part> {
        match name {
            "meta" => Some(Part::Meta),
            "rootfs" => Some(Part::Rootfs),
            _ => None,
        }
    }
}

/// The tree's `index.json`, naming the products of `products`.
pub fn index(products: &Products) -> Stream {
    let entry = StreamIndex {
        datatype: "image-downloads".to_owned(),
        path: PRODUCTS_PATH.to_owned(),
        products: products.products.keys().cloned().collect(),
        format: "products:1.0".to_owned(),
        ..Default::default()
    };
    Stream {
        index: [("images".to_owned(), entry)].into(),
        format: "index:1.0".to_owned(),
        ..Default::default()
    }
}

/// The tree's products: every public image of the `default` project.
pub async fn products(cx: &Ctx) -> Result<Products> {
    let images = super::list(cx, berth_api::DEFAULT_PROJECT).await?;
    let mut served = Vec::new();
    for rec in images.into_iter().filter(|r| r.image.public) {
        let (meta, rootfs) = super::files(cx, &rec);
        served.push((rec, meta, rootfs));
    }
    let products = tokio::task::spawn_blocking(move || {
        let mut out = Products {
            content_id: "images".to_owned(),
            datatype: "image-downloads".to_owned(),
            format: "products:1.0".to_owned(),
            ..Default::default()
        };
        for (rec, meta, rootfs) in served {
            match product(&rec, &meta, rootfs.as_deref()) {
                Ok((key, p)) => {
                    out.products.insert(key, p);
                }
                Err(e) => tracing::warn!(
                    fingerprint = %rec.image.fingerprint,
                    error = %e,
                    "Image left out of the simplestreams tree"
                ),
            }
        }
        out
    })
    .await?;
    Ok(products)
}

/// The file `part` of public image `fp` (the whole fingerprint) of the `default`
/// project, or not found.
pub async fn file(cx: &Ctx, fp: &str, part: Part) -> Result<PathBuf> {
    let missing = || Failure::not_found("Image file not found");
    if fp.len() != 64 {
        return Err(missing());
    }
    let rec = super::resolve(cx, berth_api::DEFAULT_PROJECT, fp)
        .await
        .map_err(|_| missing())?;
    if !rec.image.public {
        return Err(missing());
    }
    let (meta, rootfs) = super::files(cx, &rec);
    match part {
        Part::Meta => Ok(meta),
        Part::Rootfs => rootfs.ok_or_else(missing),
    }
}

/// One image as a product: its key and content. Blocking (hashes a split image's files
/// the first time).
fn product(
    rec: &ImageRecord,
    meta: &Path,
    rootfs: Option<&Path>,
) -> std::io::Result<(String, Product)> {
    let img = &rec.image;
    let fp = &img.fingerprint;
    let prop = |k: &str| img.properties.get(k).cloned().unwrap_or_default();
    let arch = berth_api::simplestreams::debian_arch(&img.architecture).to_owned();
    let os = Some(prop("os"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "berth".to_owned());
    let variant = Some(prop("variant"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_owned());
    let path = |part: &str| format!("streams/v1/files/{fp}/{part}");
    let mut items = BTreeMap::new();
    match rootfs {
        None => {
            let size = std::fs::metadata(meta)?.len();
            for ftype in COMBINED {
                items.insert(
                    ftype.to_owned(),
                    Item {
                        ftype: ftype.to_owned(),
                        path: path("meta"),
                        sha256: fp.clone(),
                        size,
                        ..Default::default()
                    },
                );
            }
        }
        Some(rootfs) => {
            let (meta_sha, meta_size) = hashed(meta)?;
            let (root_sha, root_size) = hashed(rootfs)?;
            let squashfs = is_squashfs(rootfs)?;
            let root_type = if squashfs { "squashfs" } else { "root.tar.xz" };
            for ftype in METADATA {
                let mut item = Item {
                    ftype: ftype.to_owned(),
                    path: path("meta"),
                    sha256: meta_sha.clone(),
                    size: meta_size,
                    ..Default::default()
                };
                if squashfs {
                    item.combined_squashfs_sha256 = fp.clone();
                } else {
                    item.combined_rootxz_sha256 = fp.clone();
                    item.combined_sha256 = fp.clone();
                }
                items.insert(ftype.to_owned(), item);
            }
            items.insert(
                root_type.to_owned(),
                Item {
                    ftype: root_type.to_owned(),
                    path: path("rootfs"),
                    sha256: root_sha,
                    size: root_size,
                    ..Default::default()
                },
            );
        }
    }
    let aliases: Vec<&str> = img.aliases.iter().map(|a| a.name.as_str()).collect();
    let product = Product {
        aliases: aliases.join(","),
        arch: arch.clone(),
        os: os.clone(),
        release: prop("release"),
        release_title: Some(prop("release"))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| prop("description")),
        variant: variant.clone(),
        versions: [(
            version_name(&img.created_at),
            Version {
                items,
                label: String::new(),
            },
        )]
        .into(),
        ..Default::default()
    };
    let key = format!(
        "{os}:{}:{arch}:{variant}:{}",
        prop("release"),
        &fp[..12.min(fp.len())]
    );
    Ok((key, product))
}

/// `YYYYMMDD_HH:MM` of an RFC 3339 date, as trees name versions.
fn version_name(created: &str) -> String {
    let digits = |s: Option<&str>| s.unwrap_or("").replace('-', "");
    let date = digits(created.get(..10));
    let time = created.get(11..16).unwrap_or("00:00");
    if date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()) {
        format!("{date}_{time}")
    } else {
        "19700101_00:00".to_owned()
    }
}

fn is_squashfs(path: &Path) -> std::io::Result<bool> {
    let mut magic = [0u8; 4];
    let n = std::fs::File::open(path)?.read(&mut magic)?;
    Ok(n == 4 && &magic == b"hsqs")
}

/// A file's SHA-256 and size, computed once per path and size. The lock is held while
/// hashing: requests arriving together (anyone may ask, untrusted) wait for the one
/// hash instead of each reading the file again.
fn hashed(path: &Path) -> std::io::Result<(String, u64)> {
    static KNOWN: OnceLock<Mutex<HashMap<(PathBuf, u64), String>>> = OnceLock::new();
    let size = std::fs::metadata(path)?.len();
    let key = (path.to_owned(), size);
    let mut known = KNOWN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(sha) = known.get(&key) {
        return Ok((sha.clone(), size));
    }
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut h)?;
    let sha: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    known.insert(key, sha.clone());
    Ok((sha, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_named_by_date_and_minute() {
        assert_eq!(version_name("2026-12-07T09:41:12Z"), "20261207_09:41");
        assert_eq!(version_name("garbage"), "19700101_00:00");
    }
}
