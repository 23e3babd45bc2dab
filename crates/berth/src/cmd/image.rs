//! `berth image …` and `berth image alias …`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_api::image::{Image, ImageAlias, ImagePut};
use berth_client::{Client, ImportOptions, Method};

use crate::format::{Format, Table};
use crate::image::resolve;

/// `berth image …`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Import an image file (unified), or a metadata file and a rootfs (split)
    Import {
        file: PathBuf,
        rootfs: Option<PathBuf>,
        /// Alias to give the image (repeatable)
        #[arg(long)]
        alias: Vec<String>,
        /// Make the image public
        #[arg(long)]
        public: bool,
    },
    /// List images
    #[command(alias = "ls")]
    List {
        /// The remote to list (`REMOTE:`)
        remote: Option<String>,
        #[arg(short = 'f', long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show an image's details
    Info { image: String },
    /// Show an image as YAML
    Show { image: String },
    /// Edit an image's properties in $EDITOR
    Edit { image: String },
    /// Delete images
    #[command(alias = "rm")]
    Delete {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Download an image's files
    Export {
        image: String,
        /// Directory to write to
        #[arg(default_value = ".")]
        target: PathBuf,
    },
    /// Copy an image to another server, which fetches it (`[REMOTE:]IMAGE REMOTE:`)
    Copy {
        image: String,
        target: String,
        /// Alias to give the copy (repeatable)
        #[arg(long)]
        alias: Vec<String>,
        /// Give the copy the source image's aliases too
        #[arg(long)]
        copy_aliases: bool,
        /// Make the copy public
        #[arg(long)]
        public: bool,
    },
    /// Build an image on this machine, offline
    Build {
        #[command(subcommand)]
        kind: BuildKind,
    },
    /// Manage image aliases
    #[command(subcommand)]
    Alias(AliasCommand),
}

/// What to build.
#[derive(Debug, clap::Subcommand)]
pub enum BuildKind {
    /// A ~1 MB image from Debian's busybox-static
    Busybox {
        /// Alias to give the imported image
        #[arg(long)]
        alias: Option<String>,
        /// Write the image to this file instead of importing it
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        /// The busybox binary to use
        #[arg(long, default_value = berth_image::build::busybox::DEFAULT_BUSYBOX)]
        busybox: PathBuf,
    },
    /// A Debian image made with debootstrap (minbase, systemd, DHCP on eth0); needs root
    Debian {
        /// Debian release (suite)
        #[arg(long, default_value = "bookworm")]
        release: String,
        /// Mirror to bootstrap from (default: debootstrap's own)
        #[arg(long)]
        mirror: Option<String>,
        /// Alias to give the imported image
        #[arg(long)]
        alias: Option<String>,
        /// Write the image to this file instead of importing it
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
}

/// `berth image alias …`
#[derive(Debug, clap::Subcommand)]
pub enum AliasCommand {
    /// Create an alias for an image
    Create {
        name: String,
        target: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete an alias
    #[command(alias = "rm")]
    Delete { name: String },
    /// List aliases
    #[command(alias = "ls")]
    List {
        #[arg(short = 'f', long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Rename an alias
    #[command(alias = "mv")]
    Rename { old: String, new: String },
}

fn size(bytes: u64) -> String {
    let mut v = bytes as f64;
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
        if v < 1024.0 || unit == "TiB" {
            return if unit == "B" {
                format!("{bytes}B")
            } else {
                format!("{v:.2}{unit}")
            };
        }
        v /= 1024.0;
    }
    format!("{bytes}B")
}

/// The server the image arguments name (`REMOTE:IMAGE`, `REMOTE:`), their remote
/// stripped; all of them must name the same one.
fn on_remote(default: &Client, cmd: &mut Command) -> anyhow::Result<Client> {
    let specs: Vec<&mut String> = match cmd {
        Command::List { remote, .. } => remote.iter_mut().collect(),
        Command::Info { image }
        | Command::Show { image }
        | Command::Edit { image }
        | Command::Export { image, .. } => vec![image],
        Command::Delete { images } => images.iter_mut().collect(),
        _ => vec![],
    };
    crate::remote::one_target(default, specs, "images")
}

fn print_list(images: &[Image], format: Format) -> anyhow::Result<()> {
    let mut t = Table::new(&[
        "ALIAS",
        "FINGERPRINT",
        "PUBLIC",
        "DESCRIPTION",
        "ARCHITECTURE",
        "TYPE",
        "SIZE",
        "UPLOAD DATE",
    ]);
    for i in images {
        t.row(vec![
            i.aliases
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            i.fingerprint.get(..12).unwrap_or(&i.fingerprint).to_owned(),
            if i.public { "yes" } else { "no" }.to_owned(),
            i.properties.get("description").cloned().unwrap_or_default(),
            i.architecture.clone(),
            i.kind.to_uppercase(),
            size(i.size),
            crate::format::date(&i.uploaded_at),
        ]);
    }
    print!("{}", t.render(format, &images)?);
    Ok(())
}

fn print_info(i: &Image) {
    println!("Fingerprint: {}", i.fingerprint);
    println!("Size: {}", size(i.size));
    println!("Architecture: {}", i.architecture);
    println!("Type: {}", i.kind);
    println!("Public: {}", if i.public { "yes" } else { "no" });
    println!("Timestamps:");
    println!("    Created: {}", crate::format::date(&i.created_at));
    println!("    Uploaded: {}", crate::format::date(&i.uploaded_at));
    println!("Properties:");
    for (k, v) in &i.properties {
        println!("    {k}: {v}");
    }
    println!("Aliases:");
    for a in &i.aliases {
        println!("    - {}", a.name);
    }
    println!("Profiles:");
    for p in &i.profiles {
        println!("    - {p}");
    }
}

/// The simplestreams image server a command's image argument names (`REMOTE:…` of a
/// `--protocol simplestreams` remote), with the rest of the argument.
fn tree_of(
    cmd: &Command,
) -> anyhow::Result<Option<(berth_client::simplestreams::SimpleStreams, String)>> {
    let spec = match cmd {
        Command::List {
            remote: Some(spec), ..
        }
        | Command::Info { image: spec }
        | Command::Show { image: spec }
        | Command::Copy { image: spec, .. } => spec,
        _ => return Ok(None),
    };
    let (Some(remote), rest) = crate::remote::split(spec)? else {
        return Ok(None);
    };
    Ok(crate::remote::streams(&remote)?.map(|t| (t, rest)))
}

/// The image commands that read a simplestreams server: list, info, show, and copy
/// from it (the target fetches the image itself).
async fn on_tree(
    client: &Client,
    tree: &berth_client::simplestreams::SimpleStreams,
    name: String,
    cmd: Command,
) -> anyhow::Result<()> {
    match cmd {
        Command::List { format, .. } => {
            anyhow::ensure!(
                name.is_empty(),
                "Invalid argument {name:?}: expected REMOTE:"
            );
            let images: Vec<Image> = tree.images().await?.into_iter().map(|i| i.image).collect();
            print_list(&images, format)
        }
        Command::Info { .. } => {
            print_info(&tree.find(&name).await?.image);
            Ok(())
        }
        Command::Show { .. } => {
            print!(
                "{}",
                crate::yaml::to_string(&tree.find(&name).await?.image)?
            );
            Ok(())
        }
        Command::Copy {
            target,
            mut alias,
            copy_aliases,
            public,
            ..
        } => {
            let (to, rest) = crate::remote::target(client, &target)?;
            anyhow::ensure!(
                rest.is_empty(),
                "The target is a server (`REMOTE:`), not {target:?}"
            );
            let (source, i) = crate::image::streams_source(tree, &name).await?;
            if copy_aliases {
                alias.extend(i.aliases.iter().map(|a| a.name.clone()));
            }
            crate::image::pull_into(&to, source, &alias, public).await?;
            println!(
                "Image copied: {}",
                &i.fingerprint[..12.min(i.fingerprint.len())]
            );
            Ok(())
        }
        _ => anyhow::bail!(
            "A simplestreams image server only answers image list, info, show and copy"
        ),
    }
}

pub async fn run(client: &Client, mut cmd: Command) -> anyhow::Result<()> {
    if let Some((tree, name)) = tree_of(&cmd)? {
        return on_tree(client, &tree, name, cmd).await;
    }
    let target = on_remote(client, &mut cmd)?;
    let client = &target;
    match cmd {
        Command::Import {
            file,
            rootfs,
            alias,
            public,
        } => {
            let total = std::fs::metadata(&file)?.len()
                + rootfs
                    .as_ref()
                    .map(std::fs::metadata)
                    .transpose()?
                    .map(|m| m.len())
                    .unwrap_or(0);
            let bar = crate::progress::bar(total, "Uploading image");
            let b = bar.clone();
            let opts = ImportOptions {
                public,
                aliases: alias,
                progress: Some(Arc::new(move |n| b.set_position(n))),
            };
            let fp = client.import_image(&file, rootfs.as_deref(), &opts).await;
            bar.finish_and_clear();
            println!("Image imported with fingerprint: {}", fp?);
        }
        Command::List { format, remote } => {
            if let Some(r) = remote.filter(|r| !r.is_empty()) {
                anyhow::bail!("Invalid argument {r:?}: expected REMOTE:");
            }
            let images: Vec<Image> = client.get("/1.0/images?recursion=1").await?;
            print_list(&images, format)?;
        }
        Command::Info { image } => {
            let i = resolve(client, &image).await?;
            print_info(&i);
        }
        Command::Show { image } => {
            let i = resolve(client, &image).await?;
            print!("{}", crate::yaml::to_string(&i)?);
        }
        Command::Edit { image } => {
            let i = resolve(client, &image).await?;
            let put = ImagePut {
                auto_update: i.auto_update,
                properties: i.properties.clone(),
                public: i.public,
                expires_at: Some(i.expires_at.clone()),
                profiles: Some(i.profiles.clone()),
            };
            let path = format!("/1.0/images/{}", i.fingerprint);
            crate::editor::edit_loop(&put, |new: ImagePut| {
                let client = client.clone();
                let path = path.clone();
                async move {
                    let body = serde_json::to_value(&new)?;
                    client.query(Method::PUT, &path, Some(&body)).await?;
                    Ok(())
                }
            })
            .await?;
        }
        Command::Delete { images } => {
            for name in images {
                let i = resolve(client, &name).await?;
                let r = client
                    .query(
                        Method::DELETE,
                        &format!("/1.0/images/{}", i.fingerprint),
                        None,
                    )
                    .await?;
                if let Some(id) = r.body.operation_id() {
                    client.wait_success(id).await?;
                }
            }
        }
        Command::Export { image, target } => {
            let i = resolve(client, &image).await?;
            std::fs::create_dir_all(&target)?;
            let bar = crate::progress::bar(i.size, "Exporting image");
            let b = bar.clone();
            let files = client
                .export_image(
                    &i.fingerprint,
                    &target,
                    Some(Arc::new(move |n| b.set_position(n))),
                )
                .await;
            bar.finish_and_clear();
            for f in files? {
                println!("Exported {}", f.display());
            }
        }
        Command::Copy {
            image,
            target,
            mut alias,
            copy_aliases,
            public,
        } => {
            let (from, name) = crate::remote::target(client, &image)?;
            let (to, rest) = crate::remote::target(client, &target)?;
            anyhow::ensure!(
                rest.is_empty(),
                "The target is a server (`REMOTE:`), not {target:?}"
            );
            let i = resolve(&from, &name).await?;
            if copy_aliases {
                alias.extend(i.aliases.iter().map(|a| a.name.clone()));
            }
            let fp = crate::image::copy(&from, &i, &to, &alias, public).await?;
            println!("Image copied: {}", &fp[..12.min(fp.len())]);
        }
        Command::Build { kind } => build(client, kind).await?,
        Command::Alias(cmd) => alias(client, cmd).await?,
    }
    Ok(())
}

async fn build(client: &Client, kind: BuildKind) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new().prefix("berth-build-").tempdir()?;
    let (md, out, output, alias) = match kind {
        BuildKind::Busybox {
            alias,
            output,
            busybox,
        } => {
            let out = output
                .clone()
                .unwrap_or_else(|| tmp.path().join("busybox.tar.gz"));
            let o = out.clone();
            let md = tokio::task::spawn_blocking(move || {
                berth_image::build::busybox::build(&busybox, &o)
            })
            .await??;
            (md, out, output, alias)
        }
        BuildKind::Debian {
            release,
            mirror,
            alias,
            output,
        } => {
            let out = output
                .clone()
                .unwrap_or_else(|| tmp.path().join(format!("debian-{release}.tar.gz")));
            let (o, work) = (out.clone(), tmp.path().to_owned());
            eprintln!("Bootstrapping Debian {release}; this takes a few minutes");
            let opts = berth_image::build::debian::DebianOptions { release, mirror };
            let md = tokio::task::spawn_blocking(move || {
                berth_image::build::debian::build(&opts, &work, &o)
            })
            .await??;
            (md, out, output, alias)
        }
    };
    if output.is_some() {
        println!(
            "Built {} ({})",
            out.display(),
            md.properties
                .get("description")
                .cloned()
                .unwrap_or_default()
        );
        return Ok(());
    }
    let total = std::fs::metadata(&out)?.len();
    let bar = crate::progress::bar(total, "Uploading image");
    let b = bar.clone();
    let opts = ImportOptions {
        aliases: alias.into_iter().collect(),
        progress: Some(Arc::new(move |n| b.set_position(n))),
        ..Default::default()
    };
    let fp = client.import_image(Path::new(&out), None, &opts).await;
    bar.finish_and_clear();
    println!("Image imported with fingerprint: {}", fp?);
    Ok(())
}

async fn alias(client: &Client, cmd: AliasCommand) -> anyhow::Result<()> {
    match cmd {
        AliasCommand::Create {
            name,
            target,
            description,
        } => {
            let fp = resolve(client, &target).await?.fingerprint;
            let body = serde_json::json!({"name": name, "target": fp, "description": description});
            client
                .query(Method::POST, "/1.0/images/aliases", Some(&body))
                .await?;
        }
        AliasCommand::Delete { name } => {
            client
                .query(Method::DELETE, &format!("/1.0/images/aliases/{name}"), None)
                .await?;
        }
        AliasCommand::List { format } => {
            let aliases: Vec<ImageAlias> = client.get("/1.0/images/aliases?recursion=1").await?;
            let mut t = Table::new(&["ALIAS", "FINGERPRINT", "TYPE", "DESCRIPTION"]);
            for a in &aliases {
                t.row(vec![
                    a.name.clone(),
                    a.target.get(..12).unwrap_or(&a.target).to_owned(),
                    a.kind.to_uppercase(),
                    a.description.clone(),
                ]);
            }
            print!("{}", t.render(format, &aliases)?);
        }
        AliasCommand::Rename { old, new } => {
            let body = serde_json::json!({"name": new});
            client
                .query(
                    Method::POST,
                    &format!("/1.0/images/aliases/{old}"),
                    Some(&body),
                )
                .await?;
        }
    }
    Ok(())
}
