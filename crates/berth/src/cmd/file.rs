//! `berth file push|pull|delete|create|edit`: files inside instances, as `lxc file` does.
//!
//! Paths inside instances are written `NAME/PATH`. Transfers are streamed (a progress bar
//! shows on a terminal for files over 1 MiB); owners and modes travel with the files.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_client::{Client, Fetched, FileMeta};

/// `berth file …`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Copy local files into an instance: SOURCE... NAME/PATH
    Push {
        #[arg(required = true, num_args = 2..)]
        args: Vec<String>,
        /// Copy directories recursively
        #[arg(short = 'r', long)]
        recursive: bool,
        /// Create missing parent directories
        #[arg(short = 'p', long = "create-dirs")]
        create_dirs: bool,
        /// Owner inside the instance
        #[arg(long)]
        uid: Option<u32>,
        /// Group inside the instance
        #[arg(long)]
        gid: Option<u32>,
        /// Mode, octal (default: the local file's)
        #[arg(long)]
        mode: Option<String>,
    },
    /// Copy files out of an instance: NAME/PATH... TARGET ("-": standard output)
    Pull {
        #[arg(required = true, num_args = 2..)]
        args: Vec<String>,
        /// Copy directories recursively
        #[arg(short = 'r', long)]
        recursive: bool,
        /// Create missing parent directories
        #[arg(short = 'p', long = "create-dirs")]
        create_dirs: bool,
    },
    /// Delete files in an instance
    #[command(alias = "rm")]
    Delete {
        #[arg(required = true)]
        paths: Vec<String>,
        /// Delete directories with everything in them
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Create a file, directory or symlink in an instance: NAME/PATH [SYMLINK-TARGET]
    Create {
        path: String,
        target: Option<String>,
        /// file, directory or symlink
        #[arg(long = "type", default_value = "file")]
        kind: String,
        #[arg(short = 'p', long = "create-dirs")]
        create_dirs: bool,
        #[arg(long)]
        uid: Option<u32>,
        #[arg(long)]
        gid: Option<u32>,
        #[arg(long)]
        mode: Option<String>,
    },
    /// Edit a file of an instance in $EDITOR
    Edit { path: String },
}

/// `NAME/PATH` → (NAME, /PATH).
fn split(spec: &str) -> anyhow::Result<(String, String)> {
    match spec.split_once('/') {
        Some((name, path)) if !name.is_empty() => Ok((name.to_owned(), format!("/{path}"))),
        _ => anyhow::bail!("Invalid instance path {spec:?}: expected NAME/PATH"),
    }
}

fn parse_mode(m: Option<&str>) -> anyhow::Result<Option<u32>> {
    m.map(|m| {
        u32::from_str_radix(m.trim_start_matches("0o"), 8)
            .map_err(|_| anyhow::anyhow!("Invalid mode {m:?}: expected octal, like 0644"))
    })
    .transpose()
}

fn join(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

fn base(p: &str) -> String {
    Path::new(p)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Creates every missing parent of `path` inside `name`.
async fn make_parents(
    client: &Client,
    name: &str,
    path: &str,
    meta: &FileMeta,
) -> anyhow::Result<()> {
    let mut cur = String::new();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        cur = join(&cur, part);
        client.make_dir(name, &cur, meta).await?;
    }
    Ok(())
}

fn progress_for(
    len: u64,
    label: &str,
) -> (
    Option<indicatif::ProgressBar>,
    Option<berth_client::Progress>,
) {
    if len < (1 << 20) {
        return (None, None);
    }
    let bar = crate::progress::bar(len, label);
    let b = bar.clone();
    (
        Some(bar),
        Some(std::sync::Arc::new(move |n| b.set_position(n))),
    )
}

async fn push_one(
    client: &Client,
    name: &str,
    local: &Path,
    dest: &str,
    owner: &FileMeta,
    recursive: bool,
) -> anyhow::Result<()> {
    let md = std::fs::symlink_metadata(local)
        .map_err(|e| anyhow::anyhow!("{}: {e}", local.display()))?;
    // Local owner and mode unless given.
    let meta = FileMeta {
        kind: String::new(),
        uid: owner.uid.or(Some(md.uid())),
        gid: owner.gid.or(Some(md.gid())),
        mode: owner.mode.or(Some(md.mode() & 0o7777)),
    };
    let ft = md.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(local)?;
        client
            .make_symlink(name, dest, &target.to_string_lossy(), &meta)
            .await?;
    } else if ft.is_dir() {
        if !recursive {
            anyhow::bail!("{} is a directory (use -r)", local.display());
        }
        client.make_dir(name, dest, &meta).await?;
        let mut entries: Vec<PathBuf> = std::fs::read_dir(local)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for e in entries {
            let child = join(dest, &e.file_name().unwrap_or_default().to_string_lossy());
            Box::pin(push_one(client, name, &e, &child, owner, true)).await?;
        }
    } else if ft.is_file() {
        let (bar, progress) = progress_for(md.len(), &format!("Pushing {}", local.display()));
        client
            .push_file(name, dest, local, &meta, false, progress)
            .await?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
    } else {
        anyhow::bail!(
            "{}: not a regular file, directory or symlink",
            local.display()
        );
    }
    Ok(())
}

async fn pull_one(
    client: &Client,
    name: &str,
    path: &str,
    local: &Path,
    recursive: bool,
) -> anyhow::Result<()> {
    match client.fetch_file(name, path).await? {
        Fetched::File(meta, stream, len) => {
            if local == Path::new("-") {
                let mut out = tokio::io::stdout();
                berth_client::copy_stream(stream, &mut out, None).await?;
                return Ok(());
            }
            let (bar, progress) = progress_for(len.unwrap_or(0), &format!("Pulling {path}"));
            let mut file = tokio::fs::File::create(local)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", local.display()))?;
            berth_client::copy_stream(stream, &mut file, progress).await?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            if let Some(mode) = meta.mode {
                std::fs::set_permissions(local, std::fs::Permissions::from_mode(mode))?;
            }
        }
        Fetched::Directory(meta, entries) => {
            if !recursive {
                anyhow::bail!("{name}{path} is a directory (use -r)");
            }
            match std::fs::create_dir(local) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && local.is_dir() => {}
                Err(e) => anyhow::bail!("{}: {e}", local.display()),
            }
            if let Some(mode) = meta.mode {
                std::fs::set_permissions(local, std::fs::Permissions::from_mode(mode))?;
            }
            for e in entries {
                Box::pin(pull_one(
                    client,
                    name,
                    &join(path, &e),
                    &local.join(&e),
                    true,
                ))
                .await?;
            }
        }
        Fetched::Symlink(_, target) => {
            if local == Path::new("-") {
                println!("{target}");
                return Ok(());
            }
            let _ = std::fs::remove_file(local);
            std::os::unix::fs::symlink(&target, local)
                .map_err(|e| anyhow::anyhow!("{}: {e}", local.display()))?;
        }
    }
    Ok(())
}

/// The server the instance-side arguments name (`REMOTE:NAME/PATH`), their remote
/// stripped; all of them must name the same one.
fn on_remote(default: &Client, cmd: &mut Command) -> anyhow::Result<Client> {
    let specs: Vec<&mut String> = match cmd {
        Command::Push { args, .. } => args.last_mut().into_iter().collect(),
        Command::Pull { args, .. } => {
            let n = args.len().saturating_sub(1);
            args.iter_mut().take(n).collect()
        }
        Command::Delete { paths, .. } => paths.iter_mut().collect(),
        Command::Create { path, .. } | Command::Edit { path } => vec![path],
    };
    crate::remote::one_target(default, specs, "instance paths")
}

pub async fn run(client: &Client, mut cmd: Command) -> anyhow::Result<()> {
    let target = on_remote(client, &mut cmd)?;
    let client = &target;
    match cmd {
        Command::Push {
            mut args,
            recursive,
            create_dirs,
            uid,
            gid,
            mode,
        } => {
            if recursive && (uid.is_some() || gid.is_some() || mode.is_some()) {
                anyhow::bail!("--uid, --gid and --mode cannot be used with -r");
            }
            let target = args.pop().unwrap_or_default();
            let (name, dest) = split(&target)?;
            let owner = FileMeta {
                kind: String::new(),
                uid,
                gid,
                mode: parse_mode(mode.as_deref())?,
            };
            // Into a directory when the target ends with "/", for several sources, or -r.
            let into_dir = dest.ends_with('/') || args.len() > 1 || recursive;
            for src in &args {
                let local = Path::new(src);
                let to = if into_dir {
                    join(&dest, &base(&local.to_string_lossy()))
                } else {
                    dest.clone()
                };
                if create_dirs {
                    make_parents(
                        client,
                        &name,
                        &to,
                        &FileMeta {
                            mode: None,
                            ..owner.clone()
                        },
                    )
                    .await?;
                }
                push_one(client, &name, local, &to, &owner, recursive).await?;
            }
        }
        Command::Pull {
            mut args,
            recursive,
            create_dirs,
        } => {
            let target = PathBuf::from(args.pop().unwrap_or_default());
            let into_dir = target.is_dir() || args.len() > 1;
            if create_dirs && target != Path::new("-") {
                let dir = if into_dir {
                    target.as_path()
                } else {
                    target.parent().unwrap_or(Path::new("."))
                };
                std::fs::create_dir_all(dir)?;
            }
            for spec in &args {
                let (name, path) = split(spec)?;
                let local = if into_dir {
                    target.join(base(&path))
                } else {
                    target.clone()
                };
                pull_one(client, &name, &path, &local, recursive).await?;
            }
        }
        Command::Delete { paths, force } => {
            for spec in &paths {
                let (name, path) = split(spec)?;
                client.delete_file(&name, &path, force).await?;
            }
        }
        Command::Create {
            path,
            target,
            kind,
            create_dirs,
            uid,
            gid,
            mode,
        } => {
            let (name, p) = split(&path)?;
            let meta = FileMeta {
                kind: String::new(),
                uid,
                gid,
                mode: parse_mode(mode.as_deref())?,
            };
            if create_dirs {
                make_parents(
                    client,
                    &name,
                    &p,
                    &FileMeta {
                        mode: None,
                        ..meta.clone()
                    },
                )
                .await?;
            }
            match kind.as_str() {
                "file" => {
                    client
                        .write_file(&name, &p, bytes::Bytes::new(), &meta)
                        .await?;
                }
                "directory" => client.make_dir(&name, &p, &meta).await?,
                "symlink" => {
                    let t = target.ok_or_else(|| anyhow::anyhow!("A symlink needs a target"))?;
                    client.make_symlink(&name, &p, &t, &meta).await?;
                }
                other => {
                    anyhow::bail!("Invalid type {other:?}: expected file, directory or symlink")
                }
            }
        }
        Command::Edit { path } => {
            let (name, p) = split(&path)?;
            let tmp = tempfile::Builder::new().prefix("berth-file-").tempfile()?;
            let meta = match client.fetch_file(&name, &p).await {
                Ok(Fetched::File(meta, stream, _)) => {
                    let mut f = tokio::fs::File::create(tmp.path()).await?;
                    berth_client::copy_stream(stream, &mut f, None).await?;
                    meta
                }
                Ok(_) => anyhow::bail!("{path} is not a regular file"),
                Err(e) if e.status() == Some(404) => FileMeta::default(),
                Err(e) => return Err(e.into()),
            };
            let before = std::fs::read(tmp.path())?;
            let editor = std::env::var("VISUAL")
                .or_else(|_| std::env::var("EDITOR"))
                .unwrap_or_else(|_| "vi".to_owned());
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("{editor} \"$1\""))
                .arg("sh")
                .arg(tmp.path())
                .status()?;
            if !status.success() {
                anyhow::bail!("Editor exited with {status}");
            }
            let after = std::fs::read(tmp.path())?;
            if after != before {
                let keep = FileMeta {
                    kind: String::new(),
                    ..meta
                };
                client
                    .write_file(&name, &p, bytes::Bytes::from(after), &keep)
                    .await?;
            }
        }
    }
    Ok(())
}
