//! Editing an object as YAML (`berth … edit`): piped in on standard input, or else in
//! `$EDITOR`, where a refused result opens the editor again, with the error as a comment on
//! top, until the user saves something valid or empties the file.

use std::future::Future;
use std::io::{IsTerminal, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Reads YAML from standard input when it is not a terminal (`berth profile edit p <
/// file`), else opens the editor; then applies it.
pub async fn edit_yaml<T, F, Fut>(value: &T, apply: F) -> anyhow::Result<()>
where
    T: Serialize + DeserializeOwned,
    F: Fn(T) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    if std::io::stdin().is_terminal() {
        return edit_loop(value, apply).await;
    }
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    apply(crate::yaml::from_str::<T>(&text)?).await
}

/// Opens `value` in the editor and calls `apply` with what the user saved.
pub async fn edit_loop<T, F, Fut>(value: &T, apply: F) -> anyhow::Result<()>
where
    T: Serialize + DeserializeOwned,
    F: Fn(T) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".to_owned());
    let mut text = crate::yaml::to_string(value)?;
    loop {
        let mut file = tempfile::Builder::new()
            .prefix("berth-edit-")
            .suffix(".yaml")
            .tempfile()?;
        file.write_all(text.as_bytes())?;
        file.flush()?;
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{editor} \"$1\""))
            .arg("sh")
            .arg(file.path())
            .status()?;
        if !status.success() {
            anyhow::bail!("Editor exited with {status}");
        }
        let edited = std::fs::read_to_string(file.path())?;
        let body: String = edited
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        if body.trim().is_empty() {
            anyhow::bail!("Edit cancelled: the file was emptied");
        }
        let result = match crate::yaml::from_str::<T>(&body) {
            Ok(v) => apply(v).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return Ok(()),
            // Without a terminal nobody can fix the text: fail instead of looping.
            Err(e) if !std::io::stdin().is_terminal() => return Err(e),
            Err(e) => {
                let msg = crate::one_line(&e);
                eprintln!("Error: {msg}");
                text = format!(
                    "# Error: {msg}\n# Fix the YAML below and save, or empty the file to cancel.\n{body}\n"
                );
            }
        }
    }
}
