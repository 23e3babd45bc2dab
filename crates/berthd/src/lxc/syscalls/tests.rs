//! The syscall proxy's pure parts: its messages, figures and callers' credentials.

use super::*;

/// A monitor's message for a call, with the kernel's sizes and a cookie.
fn message(nr: i32, args: [u64; 6]) -> Vec<u8> {
    let mut m = vec![0u8; HEADER];
    m[16..18].copy_from_slice(&80u16.to_ne_bytes());
    m[18..20].copy_from_slice(&24u16.to_ne_bytes());
    m[20..22].copy_from_slice(&64u16.to_ne_bytes());
    m[12..16].copy_from_slice(&4242i32.to_ne_bytes());
    m[24..32].copy_from_slice(&6u64.to_ne_bytes());
    let mut notif = vec![0u8; 80];
    notif[..8].copy_from_slice(&77u64.to_ne_bytes());
    notif[16..20].copy_from_slice(&nr.to_ne_bytes());
    notif[20..24].copy_from_slice(&AUDIT_ARCH.to_ne_bytes());
    for (i, a) in args.iter().enumerate() {
        notif[32 + 8 * i..40 + 8 * i].copy_from_slice(&a.to_ne_bytes());
    }
    m.extend(notif);
    m.extend([0u8; 24]);
    m.extend(b"cookie");
    m
}

#[test]
fn a_call_is_read_and_answered_in_place() {
    let msg = message(137, [0x1000, 0x2000, 0, 0, 0, 0]);
    let call = parse(&msg).unwrap();
    assert_eq!((call.id, call.nr, call.arch), (77, 137, AUDIT_ARCH));
    assert_eq!(call.init_pid, 4242);
    assert_eq!(call.args[..2], [0x1000, 0x2000]);

    let out = reply(&msg, &call, Answer::Value(7));
    // Header and call as sent, the cookie left out, the answer filled in.
    assert_eq!(out.len(), HEADER + 80 + 24);
    assert_eq!(out[..HEADER + 80], msg[..HEADER + 80]);
    let r = &out[HEADER + 80..];
    assert_eq!(u64::from_ne_bytes(r[..8].try_into().unwrap()), 77);
    assert_eq!(i64::from_ne_bytes(r[8..16].try_into().unwrap()), 7);
    assert_eq!(r[16..24], [0; 8], "no error, no flags");
    let out = reply(&msg, &call, Answer::Continue);
    assert_eq!(
        u32::from_ne_bytes(out[HEADER + 100..].try_into().unwrap()),
        1
    );
}

#[test]
fn a_caller_s_credentials_are_read_from_its_status() {
    let status = "Name:\tsh\nUid:\t1001000\t1001000\t1001000\t1001001\n\
                  Gid:\t1001000\t1001000\t1001000\t1001002\nGroups:\t1001000 1001005 \n\
                  CapEff:\t0000000000000000\n";
    let c = creds_of(status).unwrap();
    assert_eq!((c.uid, c.gid), (1_001_001, 1_001_002));
    assert_eq!(c.groups, [1_001_000, 1_001_005]);
    assert!(!c.overrides);
    let root = status.replace("CapEff:\t0000000000000000", "CapEff:\t000001ffffffffff");
    assert!(creds_of(&root).unwrap().overrides);
    assert_eq!(creds_of("Name:\tsh\n"), None);
}

#[test]
fn short_or_odd_messages_are_not_calls() {
    let msg = message(137, [0; 6]);
    assert_eq!(parse(&msg[..HEADER + 90]), None);
    let mut odd = msg.clone();
    odd[16..18].copy_from_slice(&8u16.to_ne_bytes());
    assert_eq!(parse(&odd), None);
    assert_eq!(parse(&[]), None);
}

#[test]
fn a_quota_bounds_total_and_free_space() {
    let dir = std::fs::File::open("/").unwrap();
    let real = berth_host::seccomp::fstatfs(&dir).unwrap();
    let unit = real.unit();
    let (_, free, available) = real.space();
    // 64 blocks, 16 used: 48 free, and available unless the filesystem has less.
    let shown = limited(real, 64 * unit, 16 * unit);
    assert_eq!(shown.space(), (64, 48, available.min(48)));
    // A limit beyond what the filesystem has: used is still what the volume holds.
    let huge = limited(real, (free + 1000) * unit, 16 * unit);
    let (blocks, free_shown, _) = huge.space();
    assert_eq!(blocks - free_shown, 16);
    // Over the limit (a lowered size): nothing free, never a negative count.
    assert_eq!(limited(real, 8 * unit, 16 * unit).space(), (8, 0, 0));
}
