//! The helper subcommands berthd re-executes itself as, for the liblxc calls that fork.
//!
//! They run in a fresh, single-threaded process (dispatched in `main` before any runtime
//! thread exists), so liblxc's fork is safe. Each prints one line on stderr on failure and
//! exits 1.

use std::ffi::OsString;
use std::path::Path;

/// `berthd forkstart NAME LXCPATH CONFIG`: starts a container, daemonized; returns once
/// it runs.
pub fn start(args: &[OsString]) -> i32 {
    let [name, lxcpath, config] = args else {
        eprintln!("usage: berthd forkstart NAME LXCPATH CONFIG");
        return 1;
    };
    let run = || -> Result<(), berth_lxc::LxcError> {
        let c = berth_lxc::Container::new(&name.to_string_lossy(), Path::new(lxcpath))?;
        c.load_config(Path::new(config))?;
        c.want_daemonize(true)?;
        c.want_close_all_fds(true)?;
        c.start()
    };
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}
