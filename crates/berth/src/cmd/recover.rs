//! `berth admin recover`: brings back the instances and custom volumes that pools hold
//! but the database no longer knows (after it was lost or moved away), as `lxd recover`
//! and `incus admin recover` do, through the same `/internal/recover` endpoints.

use std::io::{BufRead, Write};

use berth_api::backup::{RecoverPool, RecoverPost, RecoverResult};
use berth_api::storage::StoragePool;
use berth_client::{Client, Method};

/// Arguments of `berth admin recover`.
#[derive(Debug, clap::Args)]
pub struct RecoverArgs {
    /// A pool the database lost, as NAME:DRIVER:SOURCE (repeatable)
    #[arg(long = "pool")]
    pools: Vec<String>,
    /// Recover what is found without asking
    #[arg(short, long)]
    yes: bool,
}

fn lost_pool(spec: &str) -> anyhow::Result<RecoverPool> {
    let mut parts = spec.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(name), Some(driver), Some(source))
            if !name.is_empty() && !driver.is_empty() && !source.is_empty() =>
        {
            Ok(RecoverPool {
                name: name.to_owned(),
                driver: driver.to_owned(),
                description: String::new(),
                config: [("source".to_owned(), source.to_owned())].into(),
            })
        }
        _ => anyhow::bail!("Invalid pool {spec:?}: expected NAME:DRIVER:SOURCE"),
    }
}

/// One line read from the terminal after `question`, trimmed.
fn answer(question: &str) -> anyhow::Result<String> {
    print!("{question}");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

/// Asks for one more pool the database lost; `None` when there is none.
fn ask_lost_pool() -> anyhow::Result<Option<RecoverPool>> {
    let more = answer("Would you like to recover another storage pool? (yes/no) [default=no]: ")?;
    if !matches!(more.as_str(), "yes" | "y") {
        return Ok(None);
    }
    let name = answer("Name of the storage pool: ")?;
    let driver = answer("Name of the storage backend (dir, btrfs): ")?;
    let source =
        answer("Source of the storage pool (a directory, a block device or a loop file): ")?;
    lost_pool(&format!("{name}:{driver}:{source}")).map(Some)
}

pub async fn run(client: &Client, args: RecoverArgs) -> anyhow::Result<()> {
    let known: Vec<StoragePool> = client.get("/1.0/storage-pools?recursion=1").await?;
    let mut pools: Vec<RecoverPool> = known
        .iter()
        .map(|p| RecoverPool {
            name: p.name.clone(),
            driver: p.driver.clone(),
            description: p.description.clone(),
            config: p.config.clone(),
        })
        .collect();
    for spec in &args.pools {
        pools.push(lost_pool(spec)?);
    }
    // Pools the database lost are found only when named: asked for at a terminal, as
    // `incus admin recover` asks, else said.
    if args.pools.is_empty() && !args.yes {
        use std::io::IsTerminal;
        if std::io::stdin().is_terminal() {
            while let Some(p) = ask_lost_pool()? {
                pools.push(p);
            }
        } else {
            println!("Pools the database lost are scanned when named: --pool NAME:DRIVER:SOURCE");
        }
    }
    println!("Scanning storage pools:");
    for p in &pools {
        let state = if known.iter().any(|k| k.name == p.name) {
            "known"
        } else {
            "lost"
        };
        let source = p.config.get("source").map_or("", String::as_str);
        println!(" - {} ({}, {source}): {state}", p.name, p.driver);
    }
    let body = serde_json::to_value(RecoverPost { pools })?;
    let r = client
        .query(Method::POST, "/internal/recover/validate", Some(&body))
        .await?;
    let found: RecoverResult = serde_json::from_value(r.body.metadata.clone())?;
    if found.unknown_volumes.is_empty() && found.dependency_errors.is_empty() {
        println!("No unknown volumes found. Nothing to do.");
        return Ok(());
    }
    if !found.unknown_volumes.is_empty() {
        println!("These volumes are not in the database:");
        for v in &found.unknown_volumes {
            println!(
                " - {} {:?} on pool {:?} in project {:?} ({} snapshots)",
                v.kind, v.name, v.pool, v.project, v.snapshot_count
            );
        }
    }
    if !found.dependency_errors.is_empty() {
        println!("These keep them from being recovered:");
        for e in &found.dependency_errors {
            println!(" - {e}");
        }
        anyhow::bail!("Recovery is blocked: create what is missing, then run it again");
    }
    if !args.yes {
        print!("Recover them? (yes/no) [default=no]: ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "yes" | "y") {
            println!("Nothing recovered.");
            return Ok(());
        }
    }
    client
        .query(Method::POST, "/internal/recover/import", Some(&body))
        .await?;
    println!("Recovered.");
    Ok(())
}
