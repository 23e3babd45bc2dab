//! Images from another server, as LXD's `POST /1.0/images` with `source: {type: image,
//! mode: pull, server, protocol, certificate, secret, fingerprint, alias}` asks, then
//! imported as an upload is (checked, its fingerprint compared with the one asked for):
//!
//! - `lxd` (or `incus`): the image's record and files fetched over HTTPS, pinned to the
//!   certificate the client passed (no client certificate of ours: the secret the source
//!   gave the client is the key);
//! - `simplestreams`: the tree's index read, the image found by alias or fingerprint, its
//!   files fetched and checked against the tree's hashes; the certificate pinned when the
//!   client passed one, else checked against the system's roots.

use berth_api::image::Image;

use super::import::{ImportOptions, Imported, import};
use super::store::{Upload, temp_path};
use crate::ctx::Ctx;
use crate::error::{Failure, Result};

/// Where an image comes from.
#[derive(Debug, Clone, Default)]
pub struct RemoteImage {
    /// `https://HOST:PORT` of an LXD-protocol server, or a simplestreams tree's URL.
    pub server: String,
    /// `lxd` (also `incus` or empty) or `simplestreams`.
    pub protocol: String,
    /// Its certificate (PEM); optional for a simplestreams server.
    pub certificate: String,
    pub fingerprint: String,
    /// An alias on a simplestreams server, when no fingerprint is given.
    pub alias: String,
    /// The secret the source issued for this image (`POST /1.0/images/FP/secret`), or
    /// empty for a public image.
    pub secret: String,
}

impl RemoteImage {
    /// Refuses what cannot be fetched, naming the field (before any operation starts).
    pub fn check(&self) -> Result<()> {
        if self.streams()? {
            return self.check_streams();
        }
        if !self.server.starts_with("https://") {
            return Err(Failure::invalid(format!(
                "Invalid source.server {:?}: an https:// LXD-protocol server is needed",
                self.server
            )));
        }
        if self.certificate.trim().is_empty() {
            return Err(Failure::invalid(
                "source.certificate is needed: berthd fetches images only from servers it can pin",
            ));
        }
        crate::trust::parse_certificate(&self.certificate)?;
        let fp = &self.fingerprint;
        if fp.len() < 12 || fp.len() > 64 || !fp.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(Failure::invalid(format!(
                "Invalid source.fingerprint {fp:?}: expected the image's hexadecimal fingerprint"
            )));
        }
        if !self.secret.bytes().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Failure::invalid("Invalid source.secret"));
        }
        Ok(())
    }

    /// Whether the source is a simplestreams tree; an unknown protocol is refused.
    fn streams(&self) -> Result<bool> {
        match self.protocol.as_str() {
            "" | "lxd" | "incus" => Ok(false),
            "simplestreams" => Ok(true),
            other => Err(Failure::invalid(format!(
                "Invalid source.protocol {other:?}: expected lxd, incus or simplestreams"
            ))),
        }
    }

    fn check_streams(&self) -> Result<()> {
        let https = url::Url::parse(&self.server)
            .is_ok_and(|u| u.scheme() == "https" && u.host().is_some());
        if !https {
            return Err(Failure::invalid(format!(
                "Invalid source.server {:?}: a simplestreams server is an https:// URL",
                self.server
            )));
        }
        if !self.certificate.trim().is_empty() {
            crate::trust::parse_certificate(&self.certificate)?;
        }
        if self.alias.is_empty() && self.fingerprint.is_empty() {
            return Err(Failure::invalid(
                "source.alias or source.fingerprint is needed: the image to fetch",
            ));
        }
        let name = self.name();
        if name.len() > 255 || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
            let field = if self.alias.is_empty() {
                "source.fingerprint"
            } else {
                "source.alias"
            };
            return Err(Failure::invalid(format!("Invalid {field} {name:?}")));
        }
        Ok(())
    }

    /// What names the image on its server: the alias, else the fingerprint.
    fn name(&self) -> &str {
        if self.alias.is_empty() {
            &self.fingerprint
        } else {
            &self.alias
        }
    }
}

/// Fetches image `src` into `project`'s images; `opts` as for an upload (its fingerprint
/// is the one asked for; the source's properties are kept under the request's).
pub async fn pull(
    cx: &Ctx,
    project: &str,
    src: &RemoteImage,
    mut opts: ImportOptions,
) -> Result<Imported> {
    src.check()?;
    if src.streams()? {
        return pull_streams(cx, project, src, opts, false).await;
    }
    let host = src
        .server
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned();
    let der = crate::trust::parse_certificate(&src.certificate)?;
    let unreachable = |e: &dyn std::fmt::Display| {
        Failure::unavailable(format!("Unable to fetch the image from {host}: {e}"))
    };
    let client =
        berth_client::Client::https(host.clone(), der, None).map_err(|e| unreachable(&e))?;
    let query = if src.secret.is_empty() {
        String::new()
    } else {
        format!("?secret={}", src.secret)
    };
    let info: Image = client
        .get(&format!("/1.0/images/{}{query}", src.fingerprint))
        .await
        .map_err(|e| unreachable(&e))?;
    if info.fingerprint.len() != 64
        || !info.fingerprint.bytes().all(|c| c.is_ascii_hexdigit())
        || !info
            .fingerprint
            .starts_with(&src.fingerprint.to_ascii_lowercase())
    {
        return Err(Failure::invalid(
            "The source answered with another image than the one asked for",
        ));
    }
    let dir = temp_path(&cx.paths.images());
    std::fs::create_dir(&dir).map_err(|e| Failure::failed("Failed to make a download dir", e))?;
    let fetched = async {
        let files = client
            .download_image(
                &info.fingerprint,
                Some(src.secret.as_str()),
                &dir,
                Some(info.size),
            )
            .await
            .map_err(|e| unreachable(&e))?;
        let name = |p: &std::path::Path| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let mut upload = match files.as_slice() {
            [meta] | [meta, _] => {
                let mut u = Upload::new(meta.clone());
                u.meta_name = name(meta);
                u
            }
            _ => return Err(Failure::invalid("The source sent no image files")),
        };
        if let [_, rootfs] = files.as_slice() {
            upload.rootfs = Some(rootfs.clone());
            upload.rootfs_name = name(rootfs);
        }
        let mut properties = info.properties.clone();
        properties.extend(std::mem::take(&mut opts.properties));
        opts.properties = properties;
        opts.fingerprint = Some(info.fingerprint.clone());
        import(cx, project, upload, opts).await
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    let imported = fetched?;
    tracing::info!(fingerprint = %imported.fingerprint, from = %host, "Image fetched");
    Ok(imported)
}

/// The image `src` names, for an instance of `project`: the one there already when it
/// holds it, else fetched as a cached image. Returns its fingerprint.
pub async fn for_instance(cx: &Ctx, project: &str, src: &RemoteImage) -> Result<String> {
    src.check()?;
    let cached = ImportOptions {
        cached: true,
        ..Default::default()
    };
    if src.streams()? {
        let imported = pull_streams(cx, project, src, cached, true).await?;
        return Ok(imported.fingerprint);
    }
    if let Ok(rec) = super::resolve(cx, project, &src.fingerprint).await {
        return Ok(rec.image.fingerprint);
    }
    Ok(pull(cx, project, src, cached).await?.fingerprint)
}

/// Fetches image `src` from a simplestreams tree into `project`'s images (when `reuse`,
/// unless it holds it already).
async fn pull_streams(
    cx: &Ctx,
    project: &str,
    src: &RemoteImage,
    mut opts: ImportOptions,
    reuse: bool,
) -> Result<Imported> {
    let pinned = if src.certificate.trim().is_empty() {
        None
    } else {
        Some(crate::trust::parse_certificate(&src.certificate)?)
    };
    let server = &src.server;
    let unreachable = |e: &dyn std::fmt::Display| {
        Failure::unavailable(format!("Unable to fetch the image from {server}: {e}"))
    };
    let streams = berth_client::simplestreams::SimpleStreams::new(server, pinned)
        .map_err(|e| unreachable(&e))?;
    let found = streams
        .find(src.name())
        .await
        .map_err(|e| match e.status() {
            Some(404) => {
                Failure::not_found(format!("Image {:?} not found on {server}", src.name()))
            }
            _ => unreachable(&e),
        })?;
    let fp = found.image.fingerprint.to_ascii_lowercase();
    if fp.len() != 64 || !fp.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(Failure::invalid(format!(
            "{server} lists image {:?} with an invalid fingerprint",
            src.name()
        )));
    }
    if reuse && super::resolve(cx, project, &fp).await.is_ok() {
        return Ok(Imported {
            fingerprint: fp,
            size: found.image.size,
        });
    }
    let dir = temp_path(&cx.paths.images());
    std::fs::create_dir(&dir).map_err(|e| Failure::failed("Failed to make a download dir", e))?;
    let fetched = async {
        let files = streams
            .download(&found, &dir, None)
            .await
            .map_err(|e| unreachable(&e))?;
        let mut upload = Upload::new(files[0].clone());
        upload.meta_name = found.image.filename.clone();
        if let Some(rootfs) = files.get(1) {
            upload.rootfs = Some(rootfs.clone());
            upload.rootfs_name = found
                .rootfs
                .as_ref()
                .and_then(|r| r.path.rsplit('/').next())
                .unwrap_or_default()
                .to_owned();
        }
        let mut properties = found.image.properties.clone();
        properties.extend(std::mem::take(&mut opts.properties));
        opts.properties = properties;
        opts.fingerprint = Some(fp.clone());
        import(cx, project, upload, opts).await
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    let imported = fetched?;
    tracing::info!(fingerprint = %imported.fingerprint, from = %server, "Image fetched");
    Ok(imported)
}
