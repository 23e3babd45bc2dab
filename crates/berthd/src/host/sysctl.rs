//! The kernel's tunables under /proc/sys, by their sysctl names
//! (`fs.inotify.max_user_instances`). Network ones are the calling thread's network
//! namespace's.

use std::path::PathBuf;

fn path(name: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(name.replace('.', "/"))
}

/// The value of sysctl `name`, when it exists and is one number.
pub fn read(name: &str) -> Option<u64> {
    std::fs::read_to_string(path(name))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Sets sysctl `name` to `value`.
pub fn write(name: &str, value: u64) -> std::io::Result<()> {
    std::fs::write(path(name), value.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_numbers_by_name() {
        assert!(super::read("kernel.pid_max").is_some_and(|v| v > 0));
        assert_eq!(super::read("kernel.no_such_thing"), None);
        // Several numbers are not one.
        assert_eq!(super::read("kernel.printk"), None);
    }
}
