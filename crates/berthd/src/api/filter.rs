//! `?filter=`: LXD's OData-like filters over a resource's JSON, such as
//! `name eq c1 and status eq Running` or `config.user.role ne web or not type eq container`.
//!
//! A field is a dotted path into the object; map keys may contain dots themselves
//! (`config.user.role` is `config["user.role"]`). Values compare as text, case-insensitively,
//! and may be quoted.

use serde_json::Value;

/// Why a filter does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(String);

/// A parsed filter.
#[derive(Debug, PartialEq)]
pub enum Filter {
    Cmp {
        field: String,
        equal: bool,
        value: String,
    },
    Not(Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
}

fn tokens(s: &str) -> Result<Vec<String>, FilterError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' || c == '\'' {
            chars.next();
            let mut t = String::new();
            loop {
                match chars.next() {
                    Some(q) if q == c => break,
                    Some(x) => t.push(x),
                    None => return Err(FilterError("unterminated quote".to_owned())),
                }
            }
            out.push(t);
        } else {
            let mut t = String::new();
            while let Some(&x) = chars.peek() {
                if x.is_whitespace() {
                    break;
                }
                t.push(x);
                chars.next();
            }
            out.push(t);
        }
    }
    Ok(out)
}

/// Parses a filter expression.
pub fn parse(s: &str) -> Result<Filter, FilterError> {
    let toks = tokens(s)?;
    let mut pos = 0;
    let f = parse_or(&toks, &mut pos)?;
    if pos != toks.len() {
        return Err(FilterError(format!("unexpected {:?}", toks[pos])));
    }
    Ok(f)
}

fn parse_or(t: &[String], pos: &mut usize) -> Result<Filter, FilterError> {
    let mut left = parse_and(t, pos)?;
    while t.get(*pos).is_some_and(|x| x.eq_ignore_ascii_case("or")) {
        *pos += 1;
        left = Filter::Or(Box::new(left), Box::new(parse_and(t, pos)?));
    }
    Ok(left)
}

fn parse_and(t: &[String], pos: &mut usize) -> Result<Filter, FilterError> {
    let mut left = parse_not(t, pos)?;
    while t.get(*pos).is_some_and(|x| x.eq_ignore_ascii_case("and")) {
        *pos += 1;
        left = Filter::And(Box::new(left), Box::new(parse_not(t, pos)?));
    }
    Ok(left)
}

fn parse_not(t: &[String], pos: &mut usize) -> Result<Filter, FilterError> {
    if t.get(*pos).is_some_and(|x| x.eq_ignore_ascii_case("not")) {
        *pos += 1;
        return Ok(Filter::Not(Box::new(parse_not(t, pos)?)));
    }
    let field = t
        .get(*pos)
        .ok_or_else(|| FilterError("missing field".to_owned()))?
        .clone();
    let op = t
        .get(*pos + 1)
        .ok_or_else(|| FilterError(format!("missing operator after {field:?}")))?;
    let equal = match op.to_ascii_lowercase().as_str() {
        "eq" => true,
        "ne" => false,
        other => return Err(FilterError(format!("unknown operator {other:?}"))),
    };
    let value = t
        .get(*pos + 2)
        .ok_or_else(|| FilterError(format!("missing value for {field:?}")))?
        .clone();
    *pos += 3;
    Ok(Filter::Cmp {
        field,
        equal,
        value,
    })
}

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(v);
    }
    let obj = v.as_object()?;
    if let Some(x) = obj.get(path) {
        return Some(x);
    }
    let parts: Vec<&str> = path.split('.').collect();
    (1..parts.len()).find_map(|i| {
        obj.get(&parts[..i].join("."))
            .and_then(|x| lookup(x, &parts[i..].join(".")))
    })
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl Filter {
    /// Whether `v` passes the filter.
    pub fn matches(&self, v: &Value) -> bool {
        match self {
            Filter::Cmp {
                field,
                equal,
                value,
            } => {
                let found = lookup(v, field).map(text).unwrap_or_default();
                found.eq_ignore_ascii_case(value) == *equal
            }
            Filter::Not(f) => !f.matches(v),
            Filter::And(a, b) => a.matches(v) && b.matches(v),
            Filter::Or(a, b) => a.matches(v) || b.matches(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_like_lxd() {
        let v =
            serde_json::json!({"name": "c1", "status": "Running", "config": {"user.role": "web"}});
        let ok = |s: &str| parse(s).unwrap().matches(&v);
        assert!(ok("name eq c1"));
        assert!(ok("status eq running and config.user.role eq web"));
        assert!(!ok("name ne c1"));
        assert!(ok("name eq c2 or not status eq Stopped"));
        assert!(ok("config.user.role eq 'web'"));
        assert!(parse("name lt c1").is_err());
        assert!(parse("name eq").is_err());
    }
}
