//! `metadata.yaml`: what an image is and which files are rendered from templates.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// When a template is rendered.
pub const TRIGGERS: [&str; 4] = ["create", "copy", "start", "rename"];

/// The parsed `metadata.yaml` of an image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageMetadata {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub creation_date: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub expiry_date: i64,
    #[serde(default, deserialize_with = "scalar_map")]
    pub properties: BTreeMap<String, String>,
    #[serde(default)]
    pub templates: BTreeMap<String, Template>,
}

/// One templated file: rendered to the map key, a path inside the container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Template {
    #[serde(default)]
    pub when: Vec<String>,
    #[serde(default)]
    pub create_only: bool,
    /// The file name under `templates/` in the image.
    pub template: String,
    #[serde(
        default,
        deserialize_with = "scalar_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub properties: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "scalar",
        skip_serializing_if = "String::is_empty"
    )]
    pub uid: String,
    #[serde(
        default,
        deserialize_with = "scalar",
        skip_serializing_if = "String::is_empty"
    )]
    pub gid: String,
    #[serde(
        default,
        deserialize_with = "scalar",
        skip_serializing_if = "String::is_empty"
    )]
    pub mode: String,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// A YAML scalar of any type, kept as its text (as LXD reads `map[string]string`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn text(self) -> String {
        match self {
            Scalar::Str(s) => s,
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Option::<Scalar>::deserialize(d).map(|s| s.map(Scalar::text).unwrap_or_default())
}

fn scalar_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let m = Option::<BTreeMap<String, Scalar>>::deserialize(d)?.unwrap_or_default();
    Ok(m.into_iter().map(|(k, v)| (k, v.text())).collect())
}

/// `metadata.yaml` is unusable.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("Invalid metadata.yaml: {0}")]
    Parse(String),
    #[error("Invalid metadata.yaml: {0}")]
    Invalid(String),
}

impl ImageMetadata {
    /// Parses and validates `metadata.yaml`.
    pub fn parse(text: &[u8]) -> Result<ImageMetadata, MetadataError> {
        let text =
            std::str::from_utf8(text).map_err(|_| MetadataError::Parse("not UTF-8".to_owned()))?;
        let md: ImageMetadata = serde_saphyr::from_str(text).map_err(|e| {
            MetadataError::Parse(
                // One line of text: a key quoted from the file may hold anything.
                e.without_snippet()
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .filter(|c| !c.is_control())
                    .collect(),
            )
        })?;
        md.validate()?;
        Ok(md)
    }

    /// Checks the fields berth relies on.
    pub fn validate(&self) -> Result<(), MetadataError> {
        let invalid = |m: String| Err(MetadataError::Invalid(m));
        if self.architecture.trim().is_empty() {
            return invalid("\"architecture\" is missing".to_owned());
        }
        if self.creation_date <= 0 {
            return invalid("\"creation_date\" is missing".to_owned());
        }
        for (path, t) in &self.templates {
            if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
                return invalid(format!("template target {path:?} must be an absolute path"));
            }
            if t.template.is_empty()
                || t.template.contains('/')
                || t.template == ".."
                || t.template == "."
            {
                return invalid(format!(
                    "template file {:?} for {path:?} must be a file name in templates/",
                    t.template
                ));
            }
            if let Some(w) = t.when.iter().find(|w| !TRIGGERS.contains(&w.as_str())) {
                return invalid(format!("template {path:?} has unknown trigger {w:?}"));
            }
        }
        Ok(())
    }

    /// Serialises the metadata as `metadata.yaml`.
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  os: debian\n  release: 12\n  description: Debian 12\ntemplates:\n  /etc/hostname:\n    when:\n      - create\n      - copy\n    template: hostname.tpl\n";

    #[test]
    fn parses_lxd_metadata() {
        let md = ImageMetadata::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(md.architecture, "x86_64");
        assert_eq!(md.properties["release"], "12", "numbers are kept as text");
        assert_eq!(md.templates["/etc/hostname"].when, vec!["create", "copy"]);
        let again = ImageMetadata::parse(md.to_yaml().as_bytes()).unwrap();
        assert_eq!(again, md);
    }

    #[test]
    fn refuses_bad_metadata() {
        for (text, needle) in [
            ("creation_date: 1\n", "architecture"),
            ("architecture: x86_64\n", "creation_date"),
            ("architecture: [1\n", "Invalid metadata.yaml"),
            (
                "architecture: a\ncreation_date: 1\ntemplates:\n  etc/x:\n    template: t\n",
                "absolute",
            ),
            (
                "architecture: a\ncreation_date: 1\ntemplates:\n  /etc/x:\n    template: ../../x\n",
                "file name",
            ),
            (
                "architecture: a\ncreation_date: 1\ntemplates:\n  /etc/x:\n    template: t\n    when: [boot]\n",
                "trigger",
            ),
        ] {
            let e = ImageMetadata::parse(text.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }
}
