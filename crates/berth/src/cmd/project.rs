//! `berth project …`: projects, their features, limits and restrictions.
//!
//! Other commands work in the project `--project` (or `$BERTH_PROJECT`) names, else in
//! the one `berth project switch` recorded, else in `default`.

use std::collections::BTreeMap;

use berth_client::{Client, Method};
use serde_json::Value;

use crate::format::{Format, Table};
use crate::object;

/// `berth project …`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List projects
    #[command(alias = "ls")]
    List {
        #[arg(short = 'f', long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show a project as YAML
    Show { name: String },
    /// Create a project
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Configuration keys: -c KEY=VALUE (repeatable)
        #[arg(short = 'c', long = "config")]
        config: Vec<String>,
    },
    /// Delete projects (only empty ones)
    #[command(alias = "rm")]
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Get a configuration key of a project
    Get { name: String, key: String },
    /// Set configuration keys of a project: NAME KEY=VALUE... or NAME KEY VALUE
    Set {
        name: String,
        #[arg(required = true)]
        config: Vec<String>,
    },
    /// Unset configuration keys of a project
    Unset {
        name: String,
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Rename an empty project
    #[command(alias = "mv")]
    Rename { name: String, new_name: String },
    /// Edit a project as YAML in $EDITOR (or from standard input)
    Edit { name: String },
    /// Show a project's limits and what its instances use of them
    Info {
        name: String,
        #[arg(short = 'f', long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Make a project the one other commands work in
    Switch { name: String },
}

/// The fields a project edit changes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ProjectPut {
    #[serde(default)]
    description: String,
    #[serde(default)]
    config: BTreeMap<String, String>,
}

/// Where `berth project switch` records the current project.
fn current_file() -> Option<std::path::PathBuf> {
    let base = std::env::var_os("BERTH_CONF")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".config/berth"))
        })?;
    Some(base.join("project"))
}

/// The project commands work in: `--project`, else the switched-to one.
pub fn current(flag: Option<String>) -> Option<String> {
    flag.or_else(|| {
        let text = std::fs::read_to_string(current_file()?).ok()?;
        Some(text.trim().to_owned()).filter(|p| !p.is_empty())
    })
}

fn path(name: &str) -> String {
    format!("/1.0/projects/{name}")
}

pub async fn run(client: &Client, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::List { format } => {
            let projects: Vec<Value> = client.get("/1.0/projects?recursion=1").await?;
            let mut t = Table::new(&["NAME", "IMAGES", "PROFILES", "DESCRIPTION", "USED BY"]);
            for p in &projects {
                let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default();
                let feature = |k: &str| {
                    if p["config"].get(k).and_then(Value::as_str) == Some("true") {
                        "YES"
                    } else {
                        "NO"
                    }
                };
                let used = p
                    .get("used_by")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                t.row(vec![
                    s("name").to_owned(),
                    feature("features.images").to_owned(),
                    feature("features.profiles").to_owned(),
                    s("description").to_owned(),
                    used.to_string(),
                ]);
            }
            print!("{}", t.render(format, &projects)?);
        }
        Command::Show { name } => {
            let p: Value = client.get(&path(&name)).await?;
            print!("{}", crate::yaml::to_string(&p)?);
        }
        Command::Create {
            name,
            description,
            config,
        } => {
            let body = serde_json::json!({
                "name": name, "description": description,
                "config": object::pairs(&config)?,
            });
            object::create(client, "/1.0/projects", "Project", &name, &body).await?;
        }
        Command::Delete { names } => {
            object::delete_each(client, "/1.0/projects", "Project", &names).await?;
        }
        Command::Get { name, key } => {
            object::print_key(client, &path(&name), &key).await?;
        }
        Command::Set { name, config } => {
            object::patch_config(client, &path(&name), object::pairs(&config)?).await?;
        }
        Command::Unset { name, keys } => {
            object::unset_keys(client, &path(&name), keys, &format!("project {name:?}")).await?;
        }
        Command::Rename { name, new_name } => {
            let body = serde_json::json!({ "name": new_name });
            client
                .query(Method::POST, &path(&name), Some(&body))
                .await?;
            println!("Project {name} renamed to {new_name}");
        }
        Command::Edit { name } => {
            let p: Value = client.get(&path(&name)).await?;
            let current: ProjectPut = serde_json::from_value(p)?;
            crate::editor::edit_yaml(&current, |put: ProjectPut| {
                let name = name.clone();
                async move {
                    let body = serde_json::to_value(&put)?;
                    client.query(Method::PUT, &path(&name), Some(&body)).await?;
                    Ok(())
                }
            })
            .await?;
        }
        Command::Info { name, format } => {
            let state: Value = client.get(&format!("{}/state", path(&name))).await?;
            let mut t = Table::new(&["RESOURCE", "LIMIT", "USAGE"]);
            if let Some(res) = state["resources"].as_object() {
                for (k, v) in res {
                    let limit = v["limit"].as_i64().unwrap_or(-1);
                    t.row(vec![
                        k.to_uppercase(),
                        if limit < 0 {
                            "UNLIMITED".to_owned()
                        } else {
                            limit.to_string()
                        },
                        v["usage"].as_i64().unwrap_or(0).to_string(),
                    ]);
                }
            }
            print!("{}", t.render(format, &state)?);
        }
        Command::Switch { name } => {
            // It must exist.
            let _: Value = client.get(&path(&name)).await?;
            let file = current_file()
                .ok_or_else(|| anyhow::anyhow!("Neither BERTH_CONF nor HOME is set"))?;
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&file, format!("{name}\n"))?;
        }
    }
    Ok(())
}
