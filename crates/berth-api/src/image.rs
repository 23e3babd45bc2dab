//! Images and image aliases.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An image as `GET /1.0/images/{fingerprint}` returns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Image {
    pub aliases: Vec<ImageAliasRef>,
    pub architecture: String,
    pub auto_update: bool,
    pub cached: bool,
    pub created_at: String,
    pub expires_at: String,
    pub filename: String,
    pub fingerprint: String,
    pub last_used_at: String,
    pub profiles: Vec<String>,
    pub properties: BTreeMap<String, String>,
    pub public: bool,
    pub size: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub update_source: Option<serde_json::Value>,
    pub uploaded_at: String,
    pub project: String,
}

/// The writable part of an image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImagePut {
    #[serde(default)]
    pub auto_update: bool,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub profiles: Option<Vec<String>>,
}

/// An alias as listed inside an image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageAliasRef {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// An image alias as `GET /1.0/images/aliases/{name}` returns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageAlias {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub target: String,
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// `POST /1.0/images/aliases`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageAliasesPost {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub target: String,
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// `PUT|PATCH /1.0/images/aliases/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageAliasPut {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub target: Option<String>,
}

/// `POST /1.0/images/aliases/{name}`: rename.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageAliasPost {
    pub name: String,
}
