//! Many full systems on one host: 30 Debian (systemd) containers boot with no sysctl set
//! by the test, each with a host id range of its own; the same on the shared map works
//! because berthd raised the host's limits; and a container exhausting its kernel
//! resources leaves its neighbours theirs.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use berth_e2e::{Daemon, ok, system_state, with_debian};

const COUNT: usize = 30;

fn names() -> Vec<String> {
    (1..=COUNT).map(|i| format!("d{i:02}")).collect()
}

/// Runs `script` in `name` with sh; its output (the exec must succeed).
fn sh(d: &Daemon, name: &str, script: &str) -> String {
    ok(&d.berth(&["exec", name, "--", "sh", "-c", script]))
}

/// Launches the 30 containers and checks that each one's systemd is running; returns the
/// host range (base, size) of each one's uid map.
async fn launch_all(d: &Daemon) -> Vec<(u64, u64)> {
    for n in names() {
        ok(&d.berth(&["launch", "deb", &n]));
    }
    let mut ranges = Vec::new();
    for n in names() {
        let state = system_state(d, &n).await;
        let failed = sh(d, &n, "systemctl --failed --no-legend --plain");
        assert_eq!(state, "running", "{n}: failed units: {failed}");
        let map = sh(d, &n, "cat /proc/self/uid_map");
        let f: Vec<u64> = map.split_whitespace().map(|v| v.parse().unwrap()).collect();
        assert_eq!(f[0], 0, "{map}");
        ranges.push((f[1], f[2]));
    }
    ranges
}

/// An exhausting loop in perl (Debian's minimal image has it): syscall 253 is
/// inotify_init and 248 add_key on x86_64; each prints how many it got and holds them.
const INOTIFY_BOMB: &str = "$| = 1; my @f; while (1) { my $fd = syscall(253); last if $fd < 0; push @f, $fd } print scalar(@f), qq(\\n); sleep 120";
const KEY_BOMB: &str = "$| = 1; my $n = 0; while (1) { my ($t, $d, $v) = (q(user), qq(k$n), q(v)); last if syscall(248, $t, $d, $v, 1, -4) < 0; $n++ } print qq($n\\n); sleep 120";
const PTY_BOMB: &str = "$| = 1; my @f; while (open(my $f, q(+<), q(/dev/ptmx))) { push @f, $f } print scalar(@f), qq(\\n); sleep 120";

#[tokio::test]
async fn thirty_debian_containers_boot_each_on_ids_of_its_own() {
    let d = Daemon::start();
    with_debian(&d).await;
    let ranges = launch_all(&d).await;
    for (i, a) in ranges.iter().enumerate() {
        for b in &ranges[i + 1..] {
            assert!(a.0 + a.1 <= b.0 || b.0 + b.1 <= a.0, "{ranges:?} overlap");
        }
    }

    // d01 takes every inotify instance, key and pty it may have, and holds them.
    let outs = [INOTIFY_BOMB, KEY_BOMB, PTY_BOMB].map(|bomb| {
        sh(
            &d,
            "d01",
            &format!("ulimit -n 1048576 2>/dev/null || ulimit -n 65536; perl -e '{bomb}' < /dev/null > /tmp/bomb.$$ 2>&1 & sleep 3; cat /tmp/bomb.$$"),
        )
    });
    for (what, out) in ["inotify instances", "keys", "ptys"].iter().zip(&outs) {
        let n: u64 = out
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{what}: {out}"));
        assert!(n > 0, "d01 got no {what}");
    }
    // Its neighbour still makes all three and starts a systemd unit.
    let out = sh(
        &d,
        "d02",
        "perl -e 'my ($t, $d, $v) = (q(user), q(mine), q(v)); \
         print syscall(253) >= 0 ? qq(inotify ok\\n) : qq(inotify: $!\\n); \
         print syscall(248, $t, $d, $v, 1, -4) >= 0 ? qq(key ok\\n) : qq(key: $!\\n); \
         print open(my $f, q(+<), q(/dev/ptmx)) ? qq(pty ok\\n) : qq(pty: $!\\n)'; \
         systemd-run --wait --quiet true && echo unit ok",
    );
    assert_eq!(out, "inotify ok\nkey ok\npty ok\nunit ok\n");
}

#[tokio::test]
async fn thirty_debian_containers_boot_on_the_shared_map_once_limits_are_raised() {
    let d = Daemon::start();
    with_debian(&d).await;
    ok(&d.berth(&["config", "set", "instances.expected=40"]));
    ok(&d.berth(&["config", "set", "instances.idmap.default=shared"]));
    // berthd checked the host's limits for 40 containers on one uid, raised what was
    // short, and says so.
    let server: serde_json::Value = d.client().get("/1.0").await.unwrap();
    let limits = server["environment"]["host_limits"]
        .as_array()
        .unwrap()
        .clone();
    for (name, needed) in [
        ("fs.inotify.max_user_instances", 40 * 128),
        ("kernel.keys.maxkeys", 40 * 20),
    ] {
        let l = limits
            .iter()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in {limits:?}"));
        assert_eq!(l["needed"], needed, "{l}");
        assert!(l["value"].as_u64().unwrap() >= needed, "{l}");
        let shown = ok(&d.berth(&["info"]));
        assert!(shown.contains(name), "{shown}");
        if let Some(from) = l["raised_from"].as_u64() {
            assert!(from < needed, "{l}");
            assert!(
                d.log()
                    .contains(&format!("Raised {name} from {from} to {needed}")),
                "the log says what was raised"
            );
        }
    }
    let ranges = launch_all(&d).await;
    assert!(ranges.iter().all(|r| *r == ranges[0]), "{ranges:?}");
}
