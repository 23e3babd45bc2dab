//! Stateful stop and start: checkpoint and restore with CRIU through liblxc.
//!
//! An instance with `migration.stateful=true` is *checkpointable*: its console comes from
//! a console keeper (see [`super::console`]) instead of liblxc's pty, which CRIU cannot
//! restore. A stateful stop dumps its processes into `DIR/containers/NAME/state/` and
//! stops it; the next start restores them from there (a stateless start discards the
//! state instead, as LXD does). Each call runs `berthd forkmigrate` (liblxc forks criu)
//! with its own `CRIU_CONFIG_FILE`, the only way to hand criu options through liblxc:
//! the console terminal is declared external on dump (`external tty[RDEV:DEV]`) and given
//! back on restore (`inherit-fd`), whatever terminal the keeper holds by then.
//!
//! Parts of a restore open the images as the container's root, some before its ids are
//! mapped, so the state directory is 0755 (inside the container's 0700 directory, which
//! no host user can pass). The criu options are berthd's own file (root's, 0600, in the
//! container's directory, made anew without following links); the console identity kept
//! with the state is checked before it is used. Stateful snapshots keep their state in
//! the snapshot's volume (`state/`, beside `rootfs/`: never visible inside).

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::StartSpec;
use super::lifecycle::Liblxc;
use crate::error::{Failure, Result};

/// The search path of criu calls: the locally built criu (`scripts/build-criu.sh`) before
/// the distribution's.
pub const CRIU_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The state directory's name in the container's directory.
const STATE: &str = "state";
/// The console's identity recorded with a checkpoint.
const CONSOLE_ID: &str = "berth-console-tty";
/// A stateful snapshot's dump in the container's directory, before it moves.
const SNAPSHOT_DUMP: &str = "snapshot-state";
/// The criu options of one call, in the container's directory.
const CRIU_CONF: &str = "criu.conf";

/// Where a stateful stop keeps the instance's state, under the containers dir `lxcpath`.
pub fn state_dir(lxcpath: &Path, name: &str) -> PathBuf {
    lxcpath.join(name).join(STATE)
}

/// Whether the instance has a saved state to restore.
pub fn has_state(lxcpath: &Path, name: &str) -> bool {
    lxcpath
        .join(name)
        .join(STATE)
        .join("inventory.img")
        .exists()
}

/// Removes whatever is at `path` without following a link there.
fn remove_any(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether `path` is a real directory (not a link to one).
fn is_real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// Copies or moves directory `from` to `to`, replacing whatever is there (never through
/// a link: an image may ship a top-level `state` entry in a volume). A move is a rename,
/// else (a pool may be on another filesystem than berthd's directory) a copy and a
/// removal. Blocking.
fn transfer_dir(from: &Path, to: &Path, keep_source: bool) -> Result<()> {
    remove_any(to).map_err(|e| Failure::failed(format!("Failed to clear {}", to.display()), e))?;
    if !keep_source {
        match std::fs::rename(from, to) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() != Some(18) => {
                return Err(Failure::internal(format!(
                    "Failed to move {}: {e}",
                    from.display()
                )));
            }
            Err(_) => {} // EXDEV
        }
    }
    if let Err(e) = berth_host::run_command(
        "cp",
        &[
            std::ffi::OsStr::new("-a"),
            std::ffi::OsStr::new("-T"),
            from.as_os_str(),
            to.as_os_str(),
        ],
    ) {
        let _ = remove_any(to);
        return Err(Failure::failed(
            format!("Failed to copy {}", from.display()),
            e,
        ));
    }
    if keep_source {
        return Ok(());
    }
    std::fs::remove_dir_all(from)
        .map_err(|e| Failure::failed(format!("Failed to remove {}", from.display()), e))
}

/// Where a stateful snapshot's dump is made before it moves into the snapshot (apart
/// from the saved state of a stateful stop, so a crash in between leaves nothing a start
/// would restore).
pub fn snapshot_dump_dir(lxcpath: &Path, name: &str) -> PathBuf {
    lxcpath.join(name).join(SNAPSHOT_DUMP)
}

/// Moves the dump of a stateful snapshot into the snapshot's volume `snapshot` (as
/// `state/`, where LXD keeps it too). Blocking.
pub fn keep_with_snapshot(lxcpath: &Path, name: &str, snapshot: &Path) -> Result<()> {
    transfer_dir(
        &snapshot_dump_dir(lxcpath, name),
        &snapshot.join(STATE),
        false,
    )
}

/// Before a stateful snapshot restore: the snapshot's state (in its volume `snapshot`)
/// copied to the instance's saved state; the snapshot keeps its own. Blocking.
pub fn state_from_snapshot(lxcpath: &Path, name: &str, snapshot: &Path) -> Result<()> {
    let carried = snapshot.join(STATE);
    if !is_real_dir(&carried) || !carried.join("inventory.img").exists() {
        return Err(Failure::internal("The snapshot's saved state is missing"));
    }
    transfer_dir(&carried, &state_dir(lxcpath, name), true)
}

/// Removes a saved state a volume carries (after a restore, from the snapshot; after a
/// copy, from the source). Blocking.
pub fn strip_volume(volume: &Path) -> Result<()> {
    remove_any(&volume.join(STATE))
        .map_err(|e| Failure::failed("Failed to remove a volume's state", e))
}

/// Removes the leftover of a stateful snapshot a crash interrupted.
pub fn discard_snapshot_dump(lxcpath: &Path, name: &str) {
    let _ = remove_any(&snapshot_dump_dir(lxcpath, name));
}

/// Removes a saved state.
pub fn discard(lxcpath: &Path, name: &str) -> Result<()> {
    match std::fs::remove_dir_all(state_dir(lxcpath, name)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Failure::failed("Failed to remove the saved state", e)),
    }
}

/// Whether a working criu is installed; the reason when not (a refusal: the request
/// needs what the host lacks).
pub async fn criu_check() -> Result<()> {
    let out = tokio::process::Command::new("criu")
        .arg("check")
        .env("PATH", CRIU_PATH)
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stderr).into_owned()
                + &String::from_utf8_lossy(&o.stdout);
            let why = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("criu check failed")
                .trim()
                .to_owned();
            Err(Failure::invalid(format!(
                "Stateful stop and start need a working CRIU ({why}; run scripts/build-criu.sh)"
            )))
        }
        Err(_) => Err(Failure::invalid(
            "Stateful stop and start need CRIU, which is not installed (run scripts/build-criu.sh)",
        )),
    }
}

/// Whether the running container was started with the keeper's console (its LXC
/// configuration says so), which a checkpoint needs.
pub fn runs_with_keeper(lxcpath: &Path, name: &str) -> bool {
    std::fs::read_to_string(lxcpath.join(name).join("lxc.conf"))
        .is_ok_and(|c| c.lines().any(|l| l == "lxc.console.path = none"))
}

/// CRIU's name of the host terminal `tty`: `tty[RDEV:DEV]`.
fn tty_id(tty: &Path) -> std::io::Result<String> {
    let m = std::fs::metadata(tty)?;
    Ok(format!("tty[{:x}:{:x}]", m.rdev(), m.dev()))
}

/// A console identity read back from a saved state, when it has CRIU's form.
fn checked_id(text: &str) -> Option<&str> {
    let id = text.trim();
    let inner = id.strip_prefix("tty[")?.strip_suffix(']')?;
    let (a, b) = inner.split_once(':')?;
    let hex = |s: &str| !s.is_empty() && s.len() <= 16 && s.bytes().all(|c| c.is_ascii_hexdigit());
    (hex(a) && hex(b)).then_some(id)
}

/// Writes this call's criu options as a new root-owned 0600 file (never through a link).
fn write_conf(path: &Path, conf: &str) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(i32::try_from(rustix::fs::OFlags::NOFOLLOW.bits()).unwrap_or(0))
        .open(path)?;
    f.write_all(conf.as_bytes())
}

/// The host and container pids of a process CRIU refused because its session leader is
/// outside the container's pid namespace, from a line of its log ("A session leader of
/// HOST(PID) is outside of its pid namespace").
fn session_outside(line: &str) -> Option<(u32, u32)> {
    let rest = line.split("A session leader of ").nth(1)?;
    let (host, rest) = rest.split_once('(')?;
    let (pid, rest) = rest.split_once(')')?;
    rest.contains("outside of its pid namespace")
        .then_some(())
        .and(Some((host.trim().parse().ok()?, pid.trim().parse().ok()?)))
}

/// An error line of criu's log, without the "N: " a helper process's lines carry.
fn error_line(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let t = match t.split_once(": ") {
        Some((n, rest)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => rest,
        _ => t,
    };
    t.starts_with("Error").then_some(t)
}

/// One line saying why criu failed, from its log `log` in `dir`.
fn criu_failure(dir: &Path, log: &str, what: &str, helper: &str) -> String {
    let text = std::fs::read_to_string(dir.join(log)).unwrap_or_default();
    if text.contains("ctty inheritance detected") {
        return format!(
            "Failed to {what} the instance: a process in it holds /dev/console as its \
             controlling terminal, which CRIU cannot restore"
        );
    }
    if let Some((host, pid)) = text.lines().find_map(session_outside) {
        let command = std::fs::read_to_string(format!("/proc/{host}/comm"))
            .map(|c| format!(" ({})", c.trim()))
            .unwrap_or_default();
        return format!(
            "Failed to {what} the instance: process {pid}{command} in it belongs to a \
             session that began outside the container, which CRIU cannot restore (end it, \
             or start it again from inside, or with setsid)"
        );
    }
    // criu's own probes for iptables binaries, rlimits and loopback addresses fail
    // harmlessly.
    let harmless = [
        "iptables",
        "ip6tables",
        "RLIMIT_NOFILE",
        "ddress already assigned",
    ];
    let last = text
        .lines()
        .filter_map(error_line)
        // The first error is the cause; "Dumping FAILED." and the like only follow it.
        .find(|l| !l.ends_with("FAILED.") && !harmless.iter().any(|h| l.contains(h)))
        .or_else(|| helper.lines().next_back())
        .map(|l| format!(": {}", l.trim()))
        .unwrap_or_default();
    format!(
        "Failed to {what} the instance{last} (log: {})",
        dir.join(log).display()
    )
}

/// Runs `berthd forkmigrate` with the criu options `conf`; the helper's stderr when it
/// fails (the outer error: it could not be run).
async fn forkmigrate(
    lx: &Liblxc,
    name: &str,
    args: &[&str],
    conf: &str,
    tty: Option<std::fs::File>,
    state: &Path,
) -> Result<Result<(), String>> {
    let dir = lx.lxcpath.join(name);
    let conf_path = dir.join(CRIU_CONF);
    write_conf(&conf_path, conf).map_err(|e| Failure::failed("Failed to write criu options", e))?;
    let exe = std::env::current_exe().map_err(|e| Failure::failed("Failed to find berthd", e))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("forkmigrate")
        .arg(args[0])
        .arg(name)
        .arg(&lx.lxcpath)
        .arg(dir.join("lxc.conf"))
        .arg(state)
        .args(&args[1..])
        .env("PATH", CRIU_PATH)
        .env("CRIU_CONFIG_FILE", &conf_path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    // A file, not a pipe: the restored container's monitor inherits it and lives on.
    let log = dir.join("forkmigrate.log");
    let stderr =
        std::fs::File::create(&log).map_err(|e| Failure::failed("Failed to create log", e))?;
    cmd.stderr(stderr);
    if let Some(tty) = tty {
        berth_host::pass_fd(&mut cmd, tty.into(), 3);
    }
    let status = tokio::process::Command::from(cmd)
        .status()
        .await
        .map_err(|e| Failure::failed("Failed to run forkmigrate", e))?;
    if status.success() {
        Ok(Ok(()))
    } else {
        Ok(Err(std::fs::read_to_string(&log).unwrap_or_default()))
    }
}

/// Checkpoints the running instance into its state directory and stops it (a stateful
/// stop). The instance must run with the keeper's console ([`runs_with_keeper`]). A
/// failure leaves no state, unless the instance died after a complete dump (then the
/// state is all that is left of its processes, and is kept).
pub(super) async fn checkpoint(lx: &Liblxc, name: &str) -> Result<()> {
    discard(&lx.lxcpath, name)?;
    dump_with(lx, name, &state_dir(&lx.lxcpath, name), true, None).await
}

/// Checkpoints the running instance, which goes on running, into
/// [`snapshot_dump_dir`] (a stateful snapshot).
pub(super) async fn snapshot_dump(lx: &Liblxc, name: &str) -> Result<()> {
    discard_snapshot_dump(&lx.lxcpath, name);
    dump_with(lx, name, &snapshot_dump_dir(&lx.lxcpath, name), false, None).await
}

/// Dumps the running instance into the fresh directory `state` (`stop`: and ends it),
/// CRIU running `script` as its action script when given (see [`super::handoff`]).
pub(super) async fn dump_with(
    lx: &Liblxc,
    name: &str,
    state: &Path,
    stop: bool,
    script: Option<&Path>,
) -> Result<()> {
    let dir = lx.lxcpath.join(name);
    let state = state.to_owned();
    let d = dir.clone();
    let tty = tokio::task::spawn_blocking(move || super::console::tty(&d))
        .await?
        .ok_or_else(|| {
            Failure::internal("The console keeper is not running (restart the instance)")
        })?;
    let id = tty_id(&tty).map_err(|e| Failure::failed("Failed to read the console", e))?;
    std::fs::create_dir(&state)
        .map_err(|e| Failure::failed("Failed to create the state dir", e))?;
    // Restored tasks open images through criu's descriptor of this directory, some
    // while their ids are not mapped yet: it must be open to "others" (0755, files 0644
    // as criu writes them). The container's directory above it stays 0700: no host user
    // reaches it by path.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755))
        .and_then(|()| std::fs::write(state.join(CONSOLE_ID), &id))
        .map_err(|e| Failure::failed("Failed to prepare the state dir", e))?;
    // systemd mounts a ramfs per service with credentials (/run/credentials/UNIT), which
    // CRIU refuses unless told to mount it anew on restore: those of services that ran
    // already hold nothing a running service reads. liblxc names no root for the cgroup2
    // hierarchy (CRIU's controller ""): without one CRIU keeps only the cgroups its
    // processes are in, not the empty ones (systemd's slices) that systemd watches.
    let mut conf = format!(
        "external {id}\next-mount-map /dev/console:console\nenable-fs ramfs\ncgroup-root :/{}\n",
        lx.cgroup(name)
    );
    if let Some(script) = script {
        conf.push_str(&format!("action-script {}\n", script.display()));
    }
    let args: &[&str] = if stop { &["dump", "stop"] } else { &["dump"] };
    if let Err(helper) = forkmigrate(lx, name, args, &conf, None, &state).await? {
        let e = criu_failure(&state, "dump.log", "checkpoint", &helper);
        // Keep criu's log for the user beside the container's other logs.
        let _ = std::fs::copy(state.join("dump.log"), dir.join("criu-dump.log"));
        let e = e.replace(
            &state.join("dump.log").display().to_string(),
            &dir.join("criu-dump.log").display().to_string(),
        );
        let (lxcpath, n) = (lx.lxcpath.clone(), name.to_owned());
        let stopped = tokio::task::spawn_blocking(move || {
            super::lifecycle::lxc_status(&lxcpath, &n).0 == berth_api::StatusCode::Stopped
        })
        .await
        .unwrap_or(false);
        if stop && stopped && state.join("inventory.img").exists() {
            return Err(Failure::internal(format!(
                "{e}; the instance stopped, its saved state was kept"
            )));
        }
        let _ = remove_any(&state);
        return Err(Failure::internal(e));
    }
    if stop {
        super::lifecycle::forget_init(&dir);
        lx.remove_cgroup_leftovers(name).await;
        lx.cgroups.remove_parent(&lx.cgroup_parent);
    }
    Ok(())
}

/// Restores the stopped instance from its saved state, which is removed once it runs.
/// A failure keeps the state (a later stateful start may try again; a stateless start
/// discards it).
pub(super) async fn restore(lx: &Liblxc, spec: &StartSpec) -> Result<()> {
    if !spec.checkpointable {
        return Err(Failure::invalid(
            "The saved state needs migration.stateful=true (set it again, or start stateless)",
        ));
    }
    // liblxc's restore path mounts the rootfs without its idmap: hand it one mapped
    // already (a bind of it, which criu makes the root, keeps the map).
    let mapped = super::root::MappedRoot::of(spec, &lx.lxcpath).await?;
    restore_from(lx, spec, mapped.as_ref()).await
}

async fn restore_from(
    lx: &Liblxc,
    spec: &StartSpec,
    mapped: Option<&super::root::MappedRoot>,
) -> Result<()> {
    let name = &spec.name;
    let state = state_dir(&lx.lxcpath, name);
    lx.prepare(spec, mapped, true).await?;
    let dir = lx.lxcpath.join(name);
    // liblxc names no root for the cgroup2 hierarchy (CRIU's controller ""), so CRIU
    // would put the processes back where the dump found them: on another host, or under
    // another name, that is not this container's cgroup.
    let mut conf = format!("cgroup-root :/{}\nenable-fs ramfs\n", lx.cgroup(name));
    let mut tty_file = None;
    if let Ok(text) = std::fs::read_to_string(state.join(CONSOLE_ID)) {
        let id = checked_id(&text)
            .ok_or_else(|| Failure::internal("The saved state's console record is invalid"))?;
        let d = dir.clone();
        let tty = tokio::task::spawn_blocking(move || super::console::tty(&d))
            .await?
            .ok_or_else(|| Failure::internal("The console keeper is not running"))?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc_o_noctty())
            .open(&tty)
            .map_err(|e| Failure::failed("Failed to open the console terminal", e))?;
        conf.push_str(&format!(
            "inherit-fd fd[3]:{id}\next-mount-map console:{}\n",
            tty.display()
        ));
        tty_file = Some(file);
    }
    if let Err(helper) = forkmigrate(lx, name, &["restore"], &conf, tty_file, &state).await? {
        let e = criu_failure(&state, "restore.log", "restore", &helper);
        let _ = std::fs::copy(state.join("restore.log"), dir.join("criu-restore.log"));
        let e = e.replace(
            &state.join("restore.log").display().to_string(),
            &dir.join("criu-restore.log").display().to_string(),
        );
        return Err(Failure::internal(lx.failed_start(name, &e).await));
    }
    let cg = lx.cgroup(name);
    if let Err(e) = lx.cgroups.delegate_restored(&cg) {
        tracing::warn!(instance = %name, error = %e, "Failed to hand the restored cgroups back");
    }
    // criu brings the freezer state back too: a stateful snapshot is dumped frozen.
    if lx.cgroups.is_frozen(&cg)
        && let Err(e) = lx.cgroups.set_frozen(&cg, false)
    {
        tracing::warn!(instance = %name, error = %e, "Failed to thaw the restored instance");
    }
    discard(&lx.lxcpath, name)
}

fn libc_o_noctty() -> i32 {
    i32::try_from(rustix::fs::OFlags::NOCTTY.bits()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::checked_id;

    #[test]
    fn error_lines_lose_a_helpers_prefix() {
        assert_eq!(
            super::error_line("     1: Error (criu/mount-v2.c:1043): mnt-v2: x"),
            Some("Error (criu/mount-v2.c:1043): mnt-v2: x")
        );
        assert_eq!(super::error_line("Error (a): b"), Some("Error (a): b"));
        assert_eq!(super::error_line("Warn (a): b"), None);
    }

    #[test]
    fn sessions_outside_name_the_process() {
        let line = "(00.100) Error (criu/cr-dump.c:1664): A session leader of 4242(17) is \
                    outside of its pid namespace";
        assert_eq!(super::session_outside(line), Some((4242, 17)));
        assert_eq!(
            super::session_outside("Error (criu/cr-dump.c:1664): other"),
            None
        );
    }

    #[test]
    fn console_records_are_checked() {
        assert_eq!(checked_id("tty[8800:1a]\n"), Some("tty[8800:1a]"));
        for bad in [
            "tty[8800:1a]\naction-script /x",
            "tty[88 00:1a]",
            "tty[:1a]",
            "tty[8800]",
            "fd[3]",
            "",
        ] {
            assert_eq!(checked_id(bad), None, "{bad:?}");
        }
    }
}
