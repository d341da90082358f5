//! Watch modes. On a terminal a frame is redrawn in place without flicker (cursor
//! home, each line overwritten and cleared to its end, then the rest of the screen
//! cleared). When stdout is not a terminal, frames are never redrawn: callers
//! print plain lines instead (see [`Screen::is_tty`]).

use std::io::{IsTerminal, Write};
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};

pub struct Screen {
    tty: bool,
    color: bool,
    drawn: bool,
}

impl Screen {
    pub fn new() -> Self {
        let tty = std::io::stdout().is_terminal();
        let color =
            anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never;
        Self {
            tty,
            color,
            drawn: false,
        }
    }

    pub fn is_tty(&self) -> bool {
        self.tty
    }

    /// Replaces what is on screen with `lines` (terminal only).
    pub fn draw(&mut self, lines: &[String]) {
        let mut frame = String::new();
        if !self.drawn {
            frame.push_str("\x1b[2J");
            self.drawn = true;
        }
        frame.push_str("\x1b[H");
        for l in lines {
            let l = if self.color {
                l.clone()
            } else {
                anstream::adapter::strip_str(l).to_string()
            };
            frame.push_str(&l);
            frame.push_str("\x1b[K\n");
        }
        frame.push_str("\x1b[J");
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(frame.as_bytes());
        let _ = out.flush();
    }
}

/// Ctrl-C and SIGTERM, listened to from the start of a watch to its end (a signal
/// arriving between two waits is not lost).
pub struct Quit {
    term: Signal,
    int: Signal,
}

impl Quit {
    pub fn new() -> anyhow::Result<Quit> {
        Ok(Quit {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves when the operator asks to stop.
    pub async fn requested(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }

    /// Sleeps `every`; `true` when asked to stop meanwhile.
    pub async fn pause(&mut self, every: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(every) => false,
            _ = self.requested() => true,
        }
    }
}
