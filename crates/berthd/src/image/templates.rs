//! Rendering an image's templates into a container's rootfs.
//!
//! Templates use the pongo2 (Jinja-like) syntax of LXD images; berth renders the
//! expressions images use for identity files: `{{ container.name }}`, `{{ instance.name }}`,
//! `{{ container.architecture }}` and `{{ config_get("key", "default") }}`. Files are written
//! with the path resolved inside the rootfs (`RESOLVE_IN_ROOT`), so a symlink planted in the
//! image cannot send a rendered file to the host.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use berth_image::ImageMetadata;
use rustix::fs::{Mode, OFlags, ResolveFlags};

/// What a template sees.
#[derive(Debug)]
pub struct Context<'a> {
    pub name: &'a str,
    pub architecture: &'a str,
    pub config: &'a BTreeMap<String, String>,
}

/// Rendering failed.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("Failed to read template {0}")]
    Read(String, #[source] std::io::Error),
    #[error("Failed to write {0}")]
    Write(String, #[source] std::io::Error),
}

fn eval(expr: &str, ctx: &Context<'_>) -> String {
    let expr = expr.trim();
    match expr {
        "container.name" | "instance.name" => return ctx.name.to_owned(),
        "container.architecture" | "instance.architecture" => return ctx.architecture.to_owned(),
        _ => {}
    }
    if let Some(args) = expr
        .strip_prefix("config_get(")
        .and_then(|a| a.strip_suffix(')'))
    {
        let parts: Vec<String> = args
            .split(',')
            .map(|p| p.trim().trim_matches(['"', '\'']).to_owned())
            .collect();
        if let Some(key) = parts.first() {
            return ctx
                .config
                .get(key)
                .cloned()
                .unwrap_or_else(|| parts.get(1).cloned().unwrap_or_default());
        }
    }
    String::new()
}

/// Replaces `{{ … }}` expressions.
pub fn render(text: &str, ctx: &Context<'_>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        match rest[start + 2..].find("}}") {
            Some(end) => {
                out.push_str(&eval(&rest[start + 2..start + 2 + end], ctx));
                rest = &rest[start + 2 + end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Renders every template of `md` triggered by `trigger` from `volume/templates` into
/// `volume/rootfs`.
pub fn apply(
    volume: &Path,
    md: &ImageMetadata,
    trigger: &str,
    ctx: &Context<'_>,
) -> Result<(), TemplateError> {
    let rootfs = volume.join("rootfs");
    for (target, t) in &md.templates {
        if !t.when.iter().any(|w| w == trigger) {
            continue;
        }
        let src = volume.join("templates").join(&t.template);
        let raw = crate::paths::read_small_file(&src, 1 << 20)
            .map_err(|e| TemplateError::Read(t.template.clone(), e))?;
        let text = String::from_utf8_lossy(&raw);
        let rendered = render(&text, ctx);
        let write_err = |e: std::io::Error| TemplateError::Write(target.clone(), e);
        let root = rustix::fs::open(
            &rootfs,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| write_err(e.into()))?;
        let mut flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        if t.create_only {
            flags |= OFlags::EXCL;
        }
        let rel = target.trim_start_matches('/');
        let fd = match rustix::fs::openat2(
            &root,
            rel,
            flags,
            Mode::from_raw_mode(0o644),
            ResolveFlags::IN_ROOT,
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::EXIST) if t.create_only => continue,
            Err(e) => return Err(write_err(e.into())),
        };
        let mut file = std::fs::File::from(fd);
        file.write_all(rendered.as_bytes()).map_err(write_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_expressions() {
        let mut config = BTreeMap::new();
        config.insert("user.x".to_owned(), "1".to_owned());
        let ctx = Context {
            name: "c1",
            architecture: "x86_64",
            config: &config,
        };
        assert_eq!(
            render("127.0.1.1\t{{ container.name }}\n", &ctx),
            "127.0.1.1\tc1\n"
        );
        assert_eq!(
            render(
                "{{config_get(\"user.x\", \"d\")}}-{{ config_get('user.y', 'd') }}",
                &ctx
            ),
            "1-d"
        );
        assert_eq!(render("{{ unknown }}|{{ open", &ctx), "|{{ open");
    }

    #[test]
    fn writes_stay_inside_the_rootfs() {
        let vol = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(vol.path().join("rootfs/etc")).unwrap();
        std::fs::create_dir_all(vol.path().join("templates")).unwrap();
        std::fs::write(vol.path().join("templates/h.tpl"), "{{ container.name }}").unwrap();
        // A symlink planted in the image pointing at a host directory.
        std::os::unix::fs::symlink(outside.path(), vol.path().join("rootfs/escape")).unwrap();
        let config = BTreeMap::new();
        let ctx = Context {
            name: "c1",
            architecture: "x86_64",
            config: &config,
        };
        let escape = ImageMetadata::parse(
            b"architecture: x86_64\ncreation_date: 1\ntemplates:\n  /escape/hostname:\n    when: [create]\n    template: h.tpl\n",
        )
        .unwrap();
        // The symlink resolves inside the rootfs, where its target does not exist.
        assert!(apply(vol.path(), &escape, "create", &ctx).is_err());
        assert!(
            !outside.path().join("hostname").exists(),
            "nothing written on the host"
        );
        let md = ImageMetadata::parse(
            b"architecture: x86_64\ncreation_date: 1\ntemplates:\n  /etc/hostname:\n    when: [create]\n    template: h.tpl\n",
        )
        .unwrap();
        apply(vol.path(), &md, "create", &ctx).unwrap();
        assert_eq!(
            std::fs::read_to_string(vol.path().join("rootfs/etc/hostname")).unwrap(),
            "c1"
        );
    }
}
