//! Scheduled snapshots: `snapshots.schedule` (a cron expression, or a comma-separated list
//! of `@hourly`, `@daily`, `@midnight`, `@weekly`, `@monthly`, `@annually`, `@yearly`),
//! `snapshots.schedule.stopped`, `snapshots.pattern` (a name with `%d` for the first free
//! number) and `snapshots.expiry` (`1S 1M 2H 3d 4w 5m 6y`: seconds, minutes, hours, days,
//! weeks, months, years), as LXD has them. Cron expressions are parsed by `croner`.

use chrono::{DateTime, Duration, Months, Utc};

use crate::error::{Failure, Result};

/// The schedules of a `snapshots.schedule` value (empty: none).
pub fn parse_schedule(value: &str) -> Result<Vec<croner::Cron>> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(Vec::new());
    }
    let bad = |why: String| {
        Failure::invalid(format!(
            "Invalid value {value:?} for \"snapshots.schedule\": {why}"
        ))
    };
    let specs: Vec<String> = if value.starts_with('@') {
        value
            .split(',')
            .map(|a| match a.trim() {
                "@midnight" => Ok("0 0 * * *".to_owned()),
                a @ ("@hourly" | "@daily" | "@weekly" | "@monthly" | "@annually" | "@yearly") => {
                    Ok(a.to_owned())
                }
                other => Err(bad(format!("unknown schedule alias {other:?}"))),
            })
            .collect::<Result<_, _>>()?
    } else {
        if value.split_whitespace().count() != 5 {
            return Err(bad(
                "expected five fields: minute hour day-of-month month day-of-week".to_owned(),
            ));
        }
        vec![value.to_owned()]
    };
    specs
        .iter()
        .map(|s| croner::Cron::new(s).parse().map_err(|e| bad(e.to_string())))
        .collect()
}

/// Whether any of `schedules` fires in the minute of `at`, read in the host's local time
/// (as LXD reads them).
pub fn fires(schedules: &[croner::Cron], at: DateTime<Utc>) -> bool {
    use chrono::Timelike;
    let at = at.with_timezone(&chrono::Local);
    let minute = at
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(at);
    schedules
        .iter()
        .any(|c| c.is_time_matching(&minute).unwrap_or(false))
}

/// When a snapshot taken at `from` expires under `snapshots.expiry` = `value`; `None` for
/// an empty value.
pub fn expiry(value: &str, from: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let bad = || {
        Failure::invalid(format!(
            "Invalid value {value:?} for \"snapshots.expiry\": expected terms like 1S 1M 2H 3d 4w 5m 6y"
        ))
    };
    let mut t = from;
    for term in value.split_whitespace() {
        let split = term.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (n, unit) = term.split_at(split);
        let n: u32 = n.parse().map_err(|_| bad())?;
        t = match unit {
            "S" => t.checked_add_signed(Duration::seconds(n.into())),
            "M" => t.checked_add_signed(Duration::minutes(n.into())),
            "H" => t.checked_add_signed(Duration::hours(n.into())),
            "d" => t.checked_add_signed(Duration::days(n.into())),
            "w" => t.checked_add_signed(Duration::weeks(n.into())),
            "m" => t.checked_add_months(Months::new(n)),
            "y" => t.checked_add_months(Months::new(n.saturating_mul(12))),
            _ => None,
        }
        .ok_or_else(bad)?;
    }
    Ok(Some(t))
}

/// Checks `snapshots.pattern`: a snapshot name, where `%d` stands for a number.
pub fn check_pattern(value: &str) -> Result<()> {
    if value.contains("{{") || value.contains("{%") {
        return Err(Failure::invalid(format!(
            "Invalid value {value:?} for \"snapshots.pattern\": templates are not supported; use text and %d"
        )));
    }
    let sample = value.replace("%d", "0");
    if sample.is_empty()
        || sample.len() > 63
        || sample.contains(['/', '\\', ' ', '\t'])
        || sample == "."
        || sample == ".."
    {
        return Err(Failure::invalid(format!(
            "Invalid value {value:?} for \"snapshots.pattern\": it must make a snapshot name (no slash or space, at most 63 characters)"
        )));
    }
    Ok(())
}

/// The name `pattern` gives the next snapshot among `taken`: `%d` becomes the first free
/// number; a pattern without `%d` that is taken gets `-N` appended.
pub fn next_name(pattern: &str, taken: &[String]) -> String {
    let free = |name: &str| !taken.iter().any(|t| t == name);
    if pattern.contains("%d") {
        return (0..)
            .map(|i| pattern.replace("%d", &i.to_string()))
            .find(|n| free(n))
            .unwrap_or_default();
    }
    if free(pattern) {
        return pattern.to_owned();
    }
    (1..)
        .map(|i| format!("{pattern}-{i}"))
        .find(|n| free(n))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn schedules_fire_in_their_minute() {
        let s = parse_schedule("30 2 * * *").unwrap();
        assert!(fires(&s, at("2026-11-29T02:30:41Z")));
        assert!(!fires(&s, at("2026-11-29T02:31:00Z")));
        let s = parse_schedule("@hourly, @midnight").unwrap();
        assert!(fires(&s, at("2026-11-29T05:00:10Z")));
        assert!(!fires(&s, at("2026-11-29T05:01:00Z")));
        assert!(parse_schedule("").unwrap().is_empty());
        for bad in ["* * *", "61 * * * *", "@sometimes", "@hourly, 0 * * * *"] {
            assert!(parse_schedule(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn expiry_adds_calendar_terms() {
        let from = at("2026-01-31T00:00:00Z");
        assert_eq!(
            expiry("1d 2H", from).unwrap(),
            Some(at("2026-02-01T02:00:00Z"))
        );
        assert_eq!(
            expiry("1m", from).unwrap(),
            Some(at("2026-02-28T00:00:00Z"))
        );
        assert_eq!(expiry("", from).unwrap(), None);
        assert!(expiry("3x", from).is_err());
        assert!(expiry("d", from).is_err());
    }

    #[test]
    fn patterns_name_snapshots() {
        let taken = vec!["snap0".to_owned(), "daily".to_owned()];
        assert_eq!(next_name("snap%d", &taken), "snap1");
        assert_eq!(next_name("daily", &taken), "daily-1");
        assert_eq!(next_name("weekly", &taken), "weekly");
        assert!(check_pattern("auto-%d").is_ok());
        assert!(check_pattern("a/b").is_err());
        assert!(check_pattern("{{ creation_date }}").is_err());
    }
}
