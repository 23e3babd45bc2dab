//! Progress bars for transfers, drawn on stderr only when it is a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A byte-counting bar with a label.
pub fn bar(total: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{msg}: {percent}% ({bytes}/{total_bytes}, {bytes_per_sec})")
    {
        bar.set_style(style);
    }
    bar.set_message(label.to_owned());
    bar
}

/// A counter of bytes and their rate with a label, for a transfer of unknown size.
pub fn bytes(label: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{msg}: {bytes} ({bytes_per_sec})") {
        bar.set_style(style);
    }
    bar.set_message(label.to_owned());
    bar
}

/// A percentage bar with a label.
pub fn percent(label: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(100), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{msg}: {pos}%") {
        bar.set_style(style);
    }
    bar.set_message(label.to_owned());
    bar
}
