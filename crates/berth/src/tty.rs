//! The local terminal during an interactive session (`exec`, `shell`, `console`): raw mode
//! so every key reaches the remote program, and the window size to tell it.

/// Puts the terminal in raw mode; restores the saved mode when dropped, so an error return
/// does not leave the user's shell raw.
pub(crate) struct RawMode(Option<rustix::termios::Termios>);

impl RawMode {
    /// Enters raw mode; when standard input is not a terminal, does nothing.
    pub(crate) fn enter() -> RawMode {
        let stdin = rustix::stdio::stdin();
        let Ok(saved) = rustix::termios::tcgetattr(stdin) else {
            return RawMode(None);
        };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = rustix::termios::tcsetattr(stdin, rustix::termios::OptionalActions::Now, &raw);
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = rustix::termios::tcsetattr(
                rustix::stdio::stdin(),
                rustix::termios::OptionalActions::Now,
                t,
            );
        }
    }
}

/// Standard output's (columns, rows); 80×24 when it is not a terminal.
pub(crate) fn term_size() -> (u16, u16) {
    rustix::termios::tcgetwinsize(rustix::stdio::stdout())
        .map(|w| (w.ws_col, w.ws_row))
        .unwrap_or((80, 24))
}
