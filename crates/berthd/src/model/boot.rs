//! Why a container died at boot, from what its console said: the host limit that failed
//! when the console names one, and its last lines.

/// The volatile key holding why the instance's init exited on its own soon after a start
/// (berth's own; cleared by the next start).
pub const STOP_REASON: &str = "volatile.last_state.stop_reason";

/// How many of the console's last lines a reason quotes.
const LINES: usize = 3;

/// A host limit a console line shows was reached: (what the line says, the sysctl).
const LIMITS: &[(&[&str], &str)] = &[
    (
        &["inotify", "Too many open files"],
        "fs.inotify.max_user_instances",
    ),
    (
        &["inotify", "No space left on device"],
        "fs.inotify.max_user_watches",
    ),
    (&["key", "Disk quota exceeded"], "kernel.keys.maxkeys"),
    (&["pty", "No space left on device"], "kernel.pty.max"),
    // liblxc's log when it cannot open the console's pty.
    (
        &["open terminal", "No space left on device"],
        "kernel.pty.max",
    ),
];

/// The sysctl a console line names as exhausted, if any line does.
pub fn limit_hit(console: &str) -> Option<&'static str> {
    console.lines().find_map(|line| {
        let lower = line.to_ascii_lowercase();
        LIMITS
            .iter()
            .find(|(words, _)| {
                words
                    .iter()
                    .all(|w| lower.contains(&w.to_ascii_lowercase()))
            })
            .map(|(_, sysctl)| *sysctl)
    })
}

/// The reason an init that exited `secs` seconds after its start gives, from its
/// `console`; `value` reads a sysctl's current value on the host.
pub fn reason(console: &str, secs: u64, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = format!("its init exited {secs} s after the start");
    if let Some(sysctl) = limit_hit(console) {
        let now = value(sysctl).map_or_else(String::new, |v| format!(", {v} on this host"));
        out.push_str(&format!(
            "; the host limit {sysctl} was reached{now} (counted per owner of a user namespace: the container's own with a range of its own, every container's on the shared map)"
        ));
    }
    let last: Vec<&str> = console
        .lines()
        .map(|l| l.trim_matches(|c: char| c.is_whitespace() || c.is_control()))
        .filter(|l| !l.is_empty())
        .collect();
    let tail = &last[last.len().saturating_sub(LINES)..];
    if tail.is_empty() {
        out.push_str("; the console said nothing");
    } else {
        out.push_str(&format!("; console: {}", tail.join(" / ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_limit_and_quotes_the_console() {
        let console = "Welcome\nFailed to create control group inotify object: Too many open files\n\
                       Failed to allocate manager object.\n[!!!!!!] Failed to allocate manager object.\nExiting PID 1...\n";
        let r = reason(console, 2, |k| {
            (k == "fs.inotify.max_user_instances").then(|| "128".to_owned())
        });
        assert_eq!(
            r,
            "its init exited 2 s after the start; the host limit fs.inotify.max_user_instances \
             was reached, 128 on this host (counted per owner of a user namespace: the container's own with a range of its own, every container's on the shared map); console: \
             Failed to allocate manager object. / [!!!!!!] Failed to allocate manager object. / \
             Exiting PID 1..."
        );
        assert_eq!(
            limit_hit("keyctl: Disk quota exceeded (adding key)"),
            Some("kernel.keys.maxkeys")
        );
        assert_eq!(limit_hit("all fine"), None);
        assert_eq!(
            limit_hit(
                "lxc c1 20261206 ERROR    terminal - ../src/lxc/terminal.c:lxc_terminal_create_native:904 - No space left on device - Failed to open terminal"
            ),
            Some("kernel.pty.max")
        );
        assert_eq!(
            reason("", 0, |_| None),
            "its init exited 0 s after the start; the console said nothing"
        );
    }
}
