//! `berth config trust add|add-certificate|list|list-tokens|revoke-token|show|remove`: the
//! server's trust store. `add [REMOTE:]NAME` issues a trust token for a client to redeem
//! with `berth remote add` (or the real `lxc`/`incus remote add`).

use base64::Engine as _;
use berth_api::Operation;
use berth_api::certificate::Certificate;
use berth_client::{Client, Method};

use crate::format::{Format, Table};

/// `berth config trust …`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Issue a trust token for a new client: [REMOTE:]NAME
    Add {
        name: String,
        /// Hold the client to the projects given
        #[arg(long)]
        restricted: bool,
        /// The projects a restricted client may use (comma-separated)
        #[arg(long, value_delimiter = ',')]
        projects: Vec<String>,
    },
    /// Trust a certificate file: [REMOTE:]FILE
    AddCertificate {
        file: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        restricted: bool,
        #[arg(long, value_delimiter = ',')]
        projects: Vec<String>,
    },
    /// List the trusted certificates: [REMOTE:]
    #[command(alias = "ls")]
    List {
        remote: Option<String>,
        #[arg(short = 'f', long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// List the tokens not yet redeemed: [REMOTE:]
    ListTokens {
        remote: Option<String>,
        #[arg(short = 'f', long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Revoke a token: [REMOTE:]NAME
    RevokeToken { name: String },
    /// Show a trusted certificate: [REMOTE:]FINGERPRINT
    Show { fingerprint: String },
    /// Remove a certificate from the trust store: [REMOTE:]FINGERPRINT
    #[command(alias = "rm")]
    Remove { fingerprint: String },
}

/// A token operation's metadata as the token a client redeems: base64 of its JSON.
fn token_of(op: &Operation) -> Option<(String, String, String)> {
    let m = op.metadata.as_ref()?;
    let s = |k: &str| {
        m.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let name = m
        .get("request")
        .and_then(|r| r.get("name"))
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    let expires = s("expiresAt");
    let token = serde_json::json!({
        "client_name": name,
        "fingerprint": s("fingerprint"),
        "addresses": m.get("addresses").cloned().unwrap_or_default(),
        "secret": s("secret"),
        "expires_at": if expires.is_empty() { berth_api_never() } else { expires.clone() },
    });
    let encoded = base64::engine::general_purpose::STANDARD.encode(token.to_string());
    Some((name, encoded, expires))
}

/// Go's zero time, which LXD clients expect for "never".
fn berth_api_never() -> String {
    "0001-01-01T00:00:00Z".to_owned()
}

async fn tokens(client: &Client) -> anyhow::Result<Vec<Operation>> {
    let by_status: std::collections::BTreeMap<String, Vec<Operation>> =
        client.get("/1.0/operations?recursion=1").await?;
    Ok(by_status
        .into_values()
        .flatten()
        .filter(|o| {
            o.class == berth_api::OperationClass::Token && o.status_code.name() == "Running"
        })
        .collect())
}

fn remote_of(default: &Client, arg: Option<&str>) -> anyhow::Result<Client> {
    match arg {
        Some(a) => Ok(crate::remote::target(default, a)?.0),
        None => Ok(default.clone()),
    }
}

pub async fn run(default: &Client, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Add {
            name,
            restricted,
            projects,
        } => {
            let (client, name) = crate::remote::target(default, &name)?;
            anyhow::ensure!(!name.is_empty(), "A name for the client is needed");
            let body = serde_json::json!({
                "name": name, "type": "client", "token": true,
                "restricted": restricted, "projects": projects,
            });
            let r = client
                .query(Method::POST, "/1.0/certificates", Some(&body))
                .await?;
            let op: Operation = serde_json::from_value(r.body.metadata)?;
            let (_, token, _) =
                token_of(&op).ok_or_else(|| anyhow::anyhow!("The server sent no token"))?;
            println!("Client {name} certificate add token:\n{token}");
        }
        Command::AddCertificate {
            file,
            name,
            restricted,
            projects,
        } => {
            let (client, file) = crate::remote::target(default, &file)?;
            let pem = std::fs::read(&file).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
            let der = crate::remote::pem_to_der(&pem)?;
            let body = serde_json::json!({
                "name": name.unwrap_or_default(), "type": "client",
                "certificate": base64::engine::general_purpose::STANDARD.encode(der),
                "restricted": restricted, "projects": projects,
            });
            client
                .query(Method::POST, "/1.0/certificates", Some(&body))
                .await?;
        }
        Command::List { remote, format } => {
            let client = remote_of(default, remote.as_deref())?;
            let certs: Vec<Certificate> = client.get("/1.0/certificates?recursion=1").await?;
            let mut t = Table::new(&["TYPE", "NAME", "FINGERPRINT", "RESTRICTED", "PROJECTS"]);
            for c in &certs {
                t.row(vec![
                    c.kind.clone(),
                    c.name.clone(),
                    c.fingerprint.chars().take(12).collect(),
                    if c.restricted { "YES" } else { "NO" }.to_owned(),
                    c.projects.join(", "),
                ]);
            }
            print!("{}", t.render(format, &certs)?);
        }
        Command::ListTokens { remote, format } => {
            let client = remote_of(default, remote.as_deref())?;
            let ops = tokens(&client).await?;
            let mut t = Table::new(&["NAME", "TOKEN", "EXPIRES AT"]);
            let mut shown = Vec::new();
            for op in &ops {
                if let Some((name, token, expires)) = token_of(op) {
                    t.row(vec![name.clone(), token.clone(), expires.clone()]);
                    shown.push(
                        serde_json::json!({"name": name, "token": token, "expires_at": expires}),
                    );
                }
            }
            print!("{}", t.render(format, &shown)?);
        }
        Command::RevokeToken { name } => {
            let (client, name) = crate::remote::target(default, &name)?;
            let ops = tokens(&client).await?;
            let op = ops
                .iter()
                .find(|op| token_of(op).is_some_and(|(n, _, _)| n == name))
                .ok_or_else(|| anyhow::anyhow!("No token for {name:?}"))?;
            client.cancel_operation(&op.id).await?;
        }
        Command::Show { fingerprint } => {
            let (client, fp) = crate::remote::target(default, &fingerprint)?;
            let c: Certificate = client.get(&format!("/1.0/certificates/{fp}")).await?;
            print!("{}", crate::yaml::to_string(&c)?);
        }
        Command::Remove { fingerprint } => {
            let (client, fp) = crate::remote::target(default, &fingerprint)?;
            client
                .query(Method::DELETE, &format!("/1.0/certificates/{fp}"), None)
                .await?;
        }
    }
    Ok(())
}
