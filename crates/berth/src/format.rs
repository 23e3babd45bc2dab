//! Output formats of listings: `-f table|csv|json|yaml|compact`.

use comfy_table::presets::NOTHING;
use comfy_table::{Cell, CellAlignment, ContentArrangement, Table as Grid};

/// LXD's table look: ASCII borders, a line under the header and between rows.
const LXD_TABLE: &str = "||--+-++|-+++++++++";
use serde::Serialize;

/// How a listing is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    Yaml,
    Compact,
}

/// Rows of a listing, before a format is chosen.
#[derive(Debug)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: vec![],
        }
    }

    pub fn row(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// Renders the rows, or `objects` themselves for the json and yaml formats.
    pub fn render<T: Serialize>(&self, format: Format, objects: &T) -> anyhow::Result<String> {
        Ok(match format {
            Format::Json => format!("{}\n", serde_json::to_string(objects)?),
            Format::Yaml => crate::yaml::to_string(objects)?,
            Format::Csv => {
                let mut out = String::new();
                for row in &self.rows {
                    let cells: Vec<String> = row.iter().map(|c| csv_cell(c)).collect();
                    out.push_str(&cells.join(","));
                    out.push('\n');
                }
                out
            }
            Format::Table | Format::Compact => {
                let mut grid = Grid::new();
                let header = self.headers.iter().map(|h| {
                    let cell = Cell::new(h);
                    if format == Format::Table {
                        cell.set_alignment(CellAlignment::Center)
                    } else {
                        cell
                    }
                });
                grid.load_preset(if format == Format::Table {
                    LXD_TABLE
                } else {
                    NOTHING
                })
                .set_content_arrangement(ContentArrangement::Disabled)
                .set_header(header);
                for row in &self.rows {
                    grid.add_row(row.clone());
                }
                let mut s = grid.to_string();
                s.push('\n');
                s
            }
        })
    }
}

fn csv_cell(c: &str) -> String {
    if c.contains([',', '"', '\n']) {
        format!("\"{}\"", c.replace('"', "\"\""))
    } else {
        c.to_owned()
    }
}

/// Bytes as LXD prints them: `1.50MiB`.
pub fn bytes(n: i64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.2}{}", units[i])
}

/// A server timestamp as the LXD CLI shows it: `2024/01/31 10:00 UTC`.
pub fn date(ts: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(ts)
        .map(|d| {
            d.with_timezone(&chrono::Utc)
                .format("%Y/%m/%d %H:%M UTC")
                .to_string()
        })
        .unwrap_or_else(|_| ts.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(&["NAME", "STATE"]);
        t.row(vec!["c1".to_owned(), "RUNNING".to_owned()]);
        t.row(vec!["a,b".to_owned(), "x\"y".to_owned()]);
        t
    }

    #[test]
    fn csv_quotes() {
        assert_eq!(
            sample().render(Format::Csv, &()).unwrap(),
            "c1,RUNNING\n\"a,b\",\"x\"\"y\"\n"
        );
    }

    #[test]
    fn table_golden() {
        let out = sample().render(Format::Table, &()).unwrap();
        assert_eq!(
            out,
            "+------+---------+\n| NAME |  STATE  |\n+------+---------+\n| c1   | RUNNING |\n+------+---------+\n| a,b  | x\"y     |\n+------+---------+\n"
        );
    }

    #[test]
    fn json_and_dates() {
        assert_eq!(
            sample().render(Format::Json, &vec![1, 2]).unwrap(),
            "[1,2]\n"
        );
        assert_eq!(
            date("2026-11-29T18:12:37.492013832Z"),
            "2026/11/29 18:12 UTC"
        );
    }
}
