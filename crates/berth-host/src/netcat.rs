//! The other end of the pipe a command like rsync runs as its remote shell (`-e`): its
//! standard input and output joined to an abstract unix socket that berthd listens on,
//! as LXD's `lxd netcat` does. Copies both ways with two threads: stdin's end shuts the
//! socket's write side (berthd sees the end), the socket's end ends the relay.

use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::{SocketAddr, UnixStream};

/// Connects to abstract socket `name` (without its leading `@`) and relays stdin to it
/// and it to stdout. Returns when the socket has nothing more to say (berthd passed on
/// the peer's end): the caller exits then, closing stdout, so that rsync sees the end too
/// even while it still holds our stdin.
pub fn relay(name: &str) -> std::io::Result<()> {
    let addr = SocketAddr::from_abstract_name(name.trim_start_matches('@').as_bytes())?;
    let sock = UnixStream::connect_addr(&addr)?;
    let mut up = sock.try_clone()?;
    std::thread::spawn(move || {
        let mut input = std::io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match input.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if up.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = up.shutdown(std::net::Shutdown::Write);
    });
    let mut down = sock;
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = down.read(&mut buf)?;
        if n == 0 {
            return out.flush();
        }
        out.write_all(&buf[..n])?;
        out.flush()?;
    }
}
