//! A progress line on standard error, drawn only when it is a terminal (a pipe or a log file
//! gets nothing but the commands' own output), at most ten times a second.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Progress {
    total: u64,
    done: u64,
    /// What is counted (`events`, `requests`), or `None` for bytes (shown in MB).
    what: Option<&'static str>,
    /// Shown before the bar (a tenant's name).
    label: String,
    tty: bool,
    started: Instant,
    drawn: Option<Instant>,
}

impl Progress {
    /// Counts `what` up to `total` (0: unknown).
    pub fn new(total: u64, what: &'static str) -> Progress {
        Progress::with(total, Some(what), String::new())
    }

    /// Counts bytes up to `total`, labelled (`acme: `).
    pub fn bytes(total: u64, label: impl Into<String>) -> Progress {
        Progress::with(total, None, label.into())
    }

    /// Counts `what`, labelled.
    pub fn labelled(total: u64, what: &'static str, label: impl Into<String>) -> Progress {
        Progress::with(total, Some(what), label.into())
    }

    fn with(total: u64, what: Option<&'static str>, label: String) -> Progress {
        Progress {
            total,
            done: 0,
            what,
            label,
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            drawn: None,
        }
    }

    /// Sets the absolute position (and the total, which a server may learn late).
    pub fn set(&mut self, done: u64, total: u64) {
        self.total = total;
        self.done = done;
        self.draw(false);
    }

    pub fn add(&mut self, n: u64) {
        self.done += n;
        self.draw(false);
    }

    fn draw(&mut self, force: bool) {
        if !self.tty
            || (!force
                && self
                    .drawn
                    .is_some_and(|t| t.elapsed() < Duration::from_millis(100)))
        {
            return;
        }
        self.drawn = Some(Instant::now());
        let frac = if self.total == 0 {
            1.0
        } else {
            (self.done as f64 / self.total as f64).min(1.0)
        };
        let width = 30;
        let filled = (frac * width as f64) as usize;
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let counts = match self.what {
            Some(what) => format!(
                "{}/{} {what} ({:.0}/s)",
                self.done,
                self.total,
                self.done as f64 / secs
            ),
            None => format!(
                "{:.1}/{:.1} MB ({:.0} MB/s)",
                self.done as f64 / 1e6,
                self.total as f64 / 1e6,
                self.done as f64 / 1e6 / secs
            ),
        };
        // What is left at the rate so far, once there is a rate to go by.
        let eta = if self.done > 0 && self.done < self.total && secs > 1.0 {
            let left = (self.total - self.done) as f64 * secs / self.done as f64;
            format!(", {left:.0} s left")
        } else {
            String::new()
        };
        eprint!(
            "\r\x1b[2K{}[{}{}] {:>3.0}% {counts}{eta}",
            self.label,
            "#".repeat(filled),
            " ".repeat(width - filled),
            frac * 100.0,
        );
    }

    /// Draws the final state and ends the line.
    pub fn finish(&mut self) {
        if self.tty && self.drawn.is_some() {
            self.draw(true);
            eprintln!();
        }
    }

    /// Removes the line (the caller prints the result in its place).
    pub fn clear(&self) {
        if self.tty && self.drawn.is_some() {
            eprint!("\r\x1b[2K");
        }
    }
}
