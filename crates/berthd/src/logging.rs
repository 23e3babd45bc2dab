//! Logging: tracing to stderr and `DIR/logs/berthd.log`, and to `logging` event subscribers.
//!
//! The stderr and file outputs honour the daemon's level (`--debug`, `--verbose`, warnings
//! otherwise). Subscribers of `/1.0/events?type=logging` get everything down to `info` (and
//! `debug` with `--debug`), as `lxc monitor --type=logging` expects; the forwarding costs
//! nothing while nobody listens.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::events::Events;

/// Installs the global subscriber. Fails if the log file cannot be opened.
pub fn init(level: Level, log_file: &Path, events: Events) -> std::io::Result<()> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)?;
    let file = Arc::new(Mutex::new(file));
    let filter = LevelFilter::from_level(level);
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(filter);
    let to_file = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_target(false)
        .with_writer(move || FileWriter(file.clone()))
        .with_filter(filter);
    let event_level = if level == Level::DEBUG {
        Level::DEBUG
    } else {
        Level::INFO
    };
    let to_events = EventsLayer { events }.with_filter(LevelFilter::from_level(event_level));
    tracing_subscriber::registry()
        .with(stderr)
        .with(to_file)
        .with(to_events)
        .try_init()
        .map_err(std::io::Error::other)
}

struct FileWriter(Arc<Mutex<File>>);

impl std::io::Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut f = self
            .0
            .lock()
            .map_err(|_| std::io::Error::other("log file lock poisoned"))?;
        f.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Forwards log records to `logging` event subscribers.
struct EventsLayer {
    events: Events,
}

impl<S: Subscriber> Layer<S> for EventsLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if !self.events.has_logging_listeners() {
            return;
        }
        let mut visitor = FieldVisitor::default();
        event.record(&mut visitor);
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            _ => "debug",
        };
        self.events.logging(berth_api::EventLogging {
            message: visitor.message,
            level: level.to_owned(),
            context: visitor.context,
        });
    }
}

#[derive(Default)]
struct FieldVisitor {
    message: String,
    context: BTreeMap<String, String>,
}

impl Visit for FieldVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.context
                .insert(field.name().to_owned(), value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.context
                .insert(field.name().to_owned(), format!("{value:?}"));
        }
    }
}
