//! `berth export [REMOTE:]NAME [FILE|-]` and `berth import [REMOTE:] FILE|- [NAME]`: an
//! instance and its snapshots as a backup tarball (LXD's layout), streamed from the server
//! into a file or standard output, and back, with the bytes and the rate shown as they go.
//! Nothing is staged on the server: it writes the tarball into the reply as it makes it,
//! and unpacks an import as it arrives.

use std::sync::Arc;

use berth_client::{BackupOptions, Client, ImportTarget, Progress};

/// Arguments of `berth export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The instance
    instance: String,
    /// Where the tarball goes (`-`: standard output); NAME.tar.gz (or the compression's
    /// suffix) by default
    target: Option<String>,
    /// Leave the snapshots out
    #[arg(long, alias = "container-only")]
    instance_only: bool,
    /// The pool driver's own streams (btrfs send): faster, imported only into a pool of
    /// the same driver
    #[arg(long)]
    optimized_storage: bool,
    /// none, gzip, zstd, xz or bzip2 (the server's `backups.compression_algorithm` by
    /// default)
    #[arg(long, default_value = "")]
    compression: String,
}

/// Arguments of `berth import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// `REMOTE:` then the file, or just the file (`-`: standard input)
    #[arg(required = true, num_args = 1..=3)]
    args: Vec<String>,
    /// The pool the instance goes to
    #[arg(short, long)]
    storage: Option<String>,
}

/// A bar counting bytes and their rate, on a terminal.
fn counter(label: &str) -> (indicatif::ProgressBar, Progress) {
    let bar = crate::progress::bytes(label);
    let b = bar.clone();
    (bar, Arc::new(move |n| b.set_position(n)))
}

pub async fn export(client: &Client, args: ExportArgs) -> anyhow::Result<()> {
    let (target, instance) = crate::remote::target(client, &args.instance)?;
    let suffix = berth_image::Compression::parse(&args.compression)
        .unwrap_or(berth_image::Compression::Gzip)
        .tar_suffix();
    let path = args.target.unwrap_or_else(|| format!("{instance}{suffix}"));
    let opts = BackupOptions {
        instance_only: args.instance_only,
        optimized_storage: args.optimized_storage,
        compression: args.compression,
    };
    let (bar, progress) = counter("Exporting");
    if path == "-" {
        let mut out = tokio::io::stdout();
        target
            .export_backup(&instance, &opts, &mut out, Some(progress))
            .await?;
    } else {
        // Written beside the target, then renamed: a failed export leaves no half file.
        let tmp = format!("{path}.partial");
        let mut file = tokio::fs::File::create(&tmp).await?;
        let done = target
            .export_backup(&instance, &opts, &mut file, Some(progress))
            .await;
        if let Err(e) = done {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e.into());
        }
        file.sync_all().await?;
        tokio::fs::rename(&tmp, &path).await?;
    }
    bar.finish_and_clear();
    if path != "-" {
        println!("Backup exported successfully!");
    }
    Ok(())
}

pub async fn import(client: &Client, args: ImportArgs) -> anyhow::Result<()> {
    // `REMOTE:` first when given (it ends with a colon), then the file, then a name.
    let mut rest: &[String] = &args.args;
    let remote = match rest.first() {
        Some(r) if r.ends_with(':') && rest.len() > 1 => {
            rest = &rest[1..];
            r.clone()
        }
        _ => String::new(),
    };
    let (target, _) = crate::remote::target(client, &remote)?;
    let (file, name) = match rest {
        [f] => (f.clone(), None),
        [f, n] => (f.clone(), Some(n.clone())),
        _ => anyhow::bail!("Expected [REMOTE:] FILE [NAME]"),
    };
    let input: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send>,
    > = if file == "-" {
        Box::pin(tokio_util::io::ReaderStream::with_capacity(
            tokio::io::stdin(),
            1 << 18,
        ))
    } else {
        let f = tokio::fs::File::open(&file)
            .await
            .map_err(|e| anyhow::anyhow!("Cannot open {file:?}: {e}"))?;
        Box::pin(tokio_util::io::ReaderStream::with_capacity(f, 1 << 18))
    };
    let (bar, progress) = counter("Importing");
    let to = ImportTarget {
        name,
        pool: args.storage,
    };
    target.import_backup(input, &to, Some(progress)).await?;
    bar.finish_and_clear();
    Ok(())
}
