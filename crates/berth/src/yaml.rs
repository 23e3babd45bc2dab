//! YAML in and out, through one module over `serde-saphyr`, so the library can be swapped in
//! one place.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Serialises `value` as a YAML document.
pub fn to_string<T: Serialize>(value: &T) -> anyhow::Result<String> {
    let mut s = serde_saphyr::to_string(value)?;
    if !s.ends_with('\n') {
        s.push('\n');
    }
    Ok(s)
}

/// Parses a YAML document.
pub fn from_str<T: DeserializeOwned>(text: &str) -> anyhow::Result<T> {
    Ok(serde_saphyr::from_str(text)?)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn golden_server_config_round_trip() {
        let mut config = BTreeMap::new();
        config.insert("core.shutdown_timeout".to_owned(), "5".to_owned());
        config.insert("user.note".to_owned(), "two words: yes".to_owned());
        config.insert("user.num".to_owned(), "0123".to_owned());
        let put = berth_api::ServerPut { config };
        let text = to_string(&put).unwrap();
        assert_eq!(
            text,
            "config:\n  core.shutdown_timeout: \"5\"\n  user.note: \"two words: yes\"\n  user.num: \"0123\"\n"
        );
        let back: berth_api::ServerPut = from_str(&text).unwrap();
        assert_eq!(back, put);
    }
}
