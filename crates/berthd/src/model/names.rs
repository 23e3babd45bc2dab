//! Names, parsed once at the edge: one newtype and one validator per kind of object.
//!
//! The host-wide name of an instance is built and split here only: its API name in the
//! `default` project, `PROJECT_NAME` in any other (neither project nor instance names
//! hold `_`), so containers, volumes, cgroups and device nodes of different projects never
//! collide without the runtime knowing of projects.

use std::fmt;

use crate::error::{Failure, Result};

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $ty(String);

        impl $ty {
            /// Parses `name`; the error names it and says what is allowed.
            pub fn parse(name: &str) -> Result<Self> {
                $check(name).map(|()| $ty(name.to_owned()))
            }

        }

        impl std::ops::Deref for $ty {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// An instance's name in its project: a host name label, as LXD requires.
    InstanceName,
    check_instance
);
name_type!(
    /// A project's name: it becomes part of host-wide instance names.
    ProjectName,
    check_project
);
name_type!(
    /// A profile's name.
    ProfileName,
    check_profile
);
name_type!(
    /// A snapshot's name.
    SnapshotName,
    check_snapshot
);
name_type!(
    /// A storage pool's name.
    PoolName,
    check_pool
);
name_type!(
    /// A custom storage volume's name in its project.
    VolumeName,
    check_volume
);
name_type!(
    /// An image alias's name (slashes allowed, as in `debian/12`).
    AliasName,
    check_alias
);

fn label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn check_instance(name: &str) -> Result<()> {
    if label(name)
        && !name.starts_with(|c: char| c == '-' || c.is_ascii_digit())
        && !name.ends_with('-')
    {
        return Ok(());
    }
    Err(Failure::invalid(format!(
        "Invalid instance name {name:?}: use letters, digits and hyphens, starting with a letter, at most 63 characters"
    )))
}

fn check_project(name: &str) -> Result<()> {
    if label(name) && name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Ok(());
    }
    Err(Failure::invalid(format!(
        "Invalid project name {name:?}: use letters, digits and hyphens, starting with a letter, at most 63 characters"
    )))
}

/// A profile's or snapshot's name (`what`): one path component, no spaces, at most 63
/// characters.
fn check_object(what: &str, name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 63
        || name == "."
        || name == ".."
        || name.contains(['/', '\\', ' ', '\n', '\t', '\0', '?', '#', '%'])
    {
        return Err(Failure::invalid(format!(
            "Invalid {what} name {name:?}: no slash, space, ?, # or %, at most 63 characters"
        )));
    }
    Ok(())
}

fn check_profile(name: &str) -> Result<()> {
    check_object("profile", name)
}

fn check_snapshot(name: &str) -> Result<()> {
    check_object("snapshot", name)
}

/// A volume's name: an object name that does not start with a dot (berthd's own
/// half-made volumes do).
fn check_volume(name: &str) -> Result<()> {
    if name.starts_with('.') {
        return Err(Failure::invalid(format!(
            "Invalid storage volume name {name:?}: it must not start with a dot"
        )));
    }
    check_object("storage volume", name)
}

fn check_pool(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !name.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(Failure::invalid(format!(
            "Invalid storage pool name {name:?}"
        )))
    }
}

/// What LXD allows (slashes included), minus what breaks URLs and shells.
fn check_alias(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 255
        || name.starts_with('/')
        || name.ends_with('/')
        || name.contains("//")
        || name.split('/').any(|part| part == "." || part == "..")
        || name.contains(['?', '#', '%'])
        || name.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(Failure::invalid(format!("Invalid alias name {name:?}")));
    }
    Ok(())
}

/// The host-wide name of instance `name` in `project`.
pub fn host_name(project: &str, name: &str) -> String {
    if project == berth_api::DEFAULT_PROJECT || project.is_empty() {
        name.to_owned()
    } else {
        format!("{project}_{name}")
    }
}

/// The project and the name within it of a host-wide instance name.
pub fn split_host_name(host_name: &str) -> (&str, &str) {
    host_name
        .split_once('_')
        .unwrap_or((berth_api::DEFAULT_PROJECT, host_name))
}

/// The name within its project of a host-wide instance name.
pub fn api_name(host_name: &str) -> &str {
    split_host_name(host_name).1
}

/// An instance's URL from its host-wide name: its name, and its project when not
/// `default`.
pub fn instance_url(host_name: &str) -> String {
    instance_url_sub(host_name, "")
}

/// The URL of something under an instance (`/logs/F`…), from its host-wide name.
pub fn instance_url_sub(host_name: &str, sub: &str) -> String {
    with_project(
        &format!("/1.0/instances/{}{sub}", api_name(host_name)),
        split_host_name(host_name).0,
    )
}

/// `path` as seen from `project`: plus `?project=` when not `default`.
pub fn with_project(path: &str, project: &str) -> String {
    if project == berth_api::DEFAULT_PROJECT {
        path.to_owned()
    } else {
        format!("{path}?project={project}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_round_trip() {
        assert_eq!(host_name("default", "c1"), "c1");
        assert_eq!(host_name("p", "c1"), "p_c1");
        assert_eq!(split_host_name("p_c1"), ("p", "c1"));
        assert_eq!(api_name("c1"), "c1");
        assert_eq!(instance_url("p_c1"), "/1.0/instances/c1?project=p");
        assert_eq!(
            instance_url_sub("c1", "/logs/x"),
            "/1.0/instances/c1/logs/x"
        );
    }

    #[test]
    fn each_kind_has_its_rules() {
        assert!(InstanceName::parse("c1").is_ok());
        for bad in ["", "1c", "-c", "c-", "p_c", "a.b"] {
            assert!(InstanceName::parse(bad).is_err(), "{bad}");
        }
        assert!(ProjectName::parse("p1").is_ok());
        assert!(ProjectName::parse("p_1").is_err());
        assert!(ProfileName::parse("my profile").is_err());
        assert!(SnapshotName::parse("snap0").is_ok());
        assert!(SnapshotName::parse("a/b").is_err());
        assert!(PoolName::parse("pool_1.x").is_ok());
        assert!(PoolName::parse(".p").is_err());
        assert!(AliasName::parse("debian/12").is_ok());
        assert!(VolumeName::parse("my_vol.1").is_ok());
        for bad in [".v", "a/b", "a b", ""] {
            assert!(VolumeName::parse(bad).is_err(), "{bad}");
        }
        assert!(AliasName::parse("a//b").is_err());
        let e = InstanceName::parse("1c").unwrap_err();
        assert_eq!(e.kind(), crate::error::Kind::Invalid);
        assert!(e.message().contains("\"1c\""));
    }
}
