//! Images from another server, as LXD's `POST /1.0/images` with `source: {type: image,
//! mode: pull, server, protocol: lxd, certificate, secret, fingerprint}` asks: the image's
//! record and files fetched over HTTPS, pinned to the certificate the client passed (no
//! client certificate of ours: the secret the source gave the client is the key), then
//! imported as an upload is (checked, its fingerprint compared with the one asked for).

use berth_api::image::Image;

use super::import::{ImportOptions, Imported, import};
use super::store::{Upload, temp_path};
use crate::ctx::Ctx;
use crate::error::{Failure, Result};

/// Where an image comes from.
#[derive(Debug, Clone, Default)]
pub struct RemoteImage {
    /// `https://HOST:PORT` of an LXD-protocol server.
    pub server: String,
    /// Its certificate (PEM).
    pub certificate: String,
    pub fingerprint: String,
    /// The secret the source issued for this image (`POST /1.0/images/FP/secret`), or
    /// empty for a public image.
    pub secret: String,
}

impl RemoteImage {
    /// Refuses what cannot be fetched, naming the field (before any operation starts).
    pub fn check(&self) -> Result<()> {
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
            .download_image(&info.fingerprint, Some(src.secret.as_str()), &dir)
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
