//! The last lines a stdio server wrote to stderr, for its health check.

use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Lines kept.
const LINES: usize = 20;
/// Longest line kept (longer ones are cut).
const LINE_BYTES: usize = 400;

#[derive(Default)]
pub(crate) struct Tail {
    lines: Mutex<VecDeque<String>>,
}

impl Tail {
    pub fn clear(&self) {
        self.lines.lock().expect("tail").clear();
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("tail").iter().cloned().collect()
    }

    pub fn push(&self, line: &str) {
        let mut line = line.trim_end().to_string();
        if line.len() > LINE_BYTES {
            let mut cut = LINE_BYTES;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        let mut lines = self.lines.lock().expect("tail");
        if lines.len() == LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// Reads `pipe` to its end, keeping the last lines.
    pub async fn fill(self: std::sync::Arc<Self>, pipe: impl AsyncRead + Unpin) {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => self.push(&String::from_utf8_lossy(&buf)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines_cut_to_size() {
        let t = Tail::default();
        for i in 0..30 {
            t.push(&format!("line {i}\n"));
        }
        let lines = t.lines();
        assert_eq!(lines.len(), LINES);
        assert_eq!(lines[0], "line 10");
        assert_eq!(lines[19], "line 29");
        t.push(&"é".repeat(300));
        let last = t.lines().pop().unwrap();
        assert!(last.len() <= LINE_BYTES + 3 && last.ends_with('…'));
    }
}
