//! Reading requests: JSON bodies (size-limited, the field at fault named on a type
//! error), fields of PUT/PATCH bodies, and query parameters.

use axum::extract::{FromRequest, Request};
use axum::http::header;
use berth_api::ErrorKind;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The largest JSON body berthd accepts.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// How much of an oversized body is read (and dropped) before replying 413. Replying while the
/// client still writes makes it see a broken pipe instead of the error, so a moderately
/// oversized body is drained first; beyond this the connection is simply closed.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// The value of query parameter `name`, if given.
pub fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// A query parameter's value, URL-decoded (`%2F`, `+`).
pub fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query_param(query, name).map(|raw| {
        url::form_urlencoded::parse(format!("v={raw}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    })
}

/// `?recursion=N`, 0 when absent.
pub fn recursion(query: Option<&str>) -> Result<u8, ApiError> {
    match query_param(query, "recursion") {
        None | Some("") => Ok(0),
        Some(v) => v.parse().map_err(|_| {
            ApiError::bad_request(format!("Invalid value {v:?} for parameter \"recursion\""))
        }),
    }
}

/// `recursion=N[;fields=A,B…]`: the level and, for LXD's selective recursion
/// (`instances_state_selective_recursion`), the fields named (`None`: all of them).
pub fn recursion_fields(query: Option<&str>) -> Result<(u8, Option<Vec<String>>), ApiError> {
    let value = query_value(query, "recursion").unwrap_or_default();
    let Some((level, fields)) = value.split_once(';') else {
        return Ok((recursion(query)?, None));
    };
    let level = level.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "Invalid value {level:?} for parameter \"recursion\""
        ))
    })?;
    let Some(list) = fields.strip_prefix("fields=") else {
        return Err(ApiError::bad_request(format!(
            "Invalid value {fields:?} in parameter \"recursion\": expected fields=NAME[,NAME...]"
        )));
    };
    Ok((
        level,
        Some(
            list.split(',')
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
    ))
}

/// The project a request names with `?project=` (`default` when absent).
pub fn project_param(query: Option<&str>) -> String {
    query_param(query, "project")
        .map(str::to_owned)
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| berth_api::DEFAULT_PROJECT.to_owned())
}

/// Field `key` of a PUT/PATCH body: absent or null is `None`, a bad type a 400 naming it.
pub fn field<T: DeserializeOwned>(
    body: &serde_json::Value,
    key: &str,
) -> Result<Option<T>, ApiError> {
    match body.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| ApiError::bad_request(format!("Invalid value for field \"{key}\": {e}"))),
    }
}

/// A JSON request body, at most [`BODY_LIMIT`] bytes.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let too_large = || {
            ApiError::new(
                ErrorKind::PayloadTooLarge,
                format!("Request body is larger than {BODY_LIMIT} bytes"),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut body = req.into_body();
        if declared.is_some_and(|n| n > DRAIN_LIMIT) {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        let mut total = 0usize;
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| ApiError::bad_request(format!("Failed to read request: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            total += data.len();
            if total > DRAIN_LIMIT {
                return Err(too_large());
            }
            if total <= BODY_LIMIT {
                bytes.extend_from_slice(&data);
            }
        }
        if total > BODY_LIMIT {
            return Err(too_large());
        }
        parse_json(&bytes).map(Json)
    }
}

/// Parses JSON, naming the field at fault when a value has the wrong type.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = if inner.is_syntax() || inner.is_eof() {
            format!("Invalid JSON: {inner}")
        } else if path == "." || path.is_empty() {
            format!("Invalid request: {inner}")
        } else {
            format!("Invalid value for field \"{path}\": {inner}")
        };
        ApiError::bad_request(msg)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Put {
        config: std::collections::BTreeMap<String, String>,
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json::<Put>(br#"{"config": {"a": 1}}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert!(e.message.contains("\"config.a\""), "{}", e.message);
        let e = parse_json::<Put>(b"{not json").unwrap_err();
        assert!(e.message.starts_with("Invalid JSON"), "{}", e.message);
    }

    #[test]
    fn query_params() {
        assert_eq!(query_param(Some("a=1&recursion=2"), "recursion"), Some("2"));
        assert_eq!(query_param(Some("project"), "project"), Some(""));
        assert_eq!(query_param(None, "x"), None);
        assert_eq!(recursion(Some("recursion=1")).unwrap(), 1);
        assert!(recursion(Some("recursion=x")).is_err());
        assert_eq!(recursion_fields(Some("recursion=2")).unwrap(), (2, None));
        assert_eq!(
            recursion_fields(Some("recursion=2;fields=state.network,state.disk")).unwrap(),
            (
                2,
                Some(vec!["state.network".to_owned(), "state.disk".to_owned()])
            )
        );
        assert_eq!(
            recursion_fields(Some("recursion=2;fields=")).unwrap(),
            (2, Some(vec![]))
        );
        assert_eq!(
            recursion_fields(Some("recursion=2%3Bfields%3Dstate.network")).unwrap(),
            (2, Some(vec!["state.network".to_owned()]))
        );
        assert!(recursion_fields(Some("recursion=2;state.network")).is_err());
        assert!(recursion_fields(Some("recursion=x;fields=state.network")).is_err());
    }
}
