//! A small column-aligned table: widths from the text, styles applied after padding
//! (so escape codes never skew the alignment). The last column is never padded.
//!
//! Tables fit the width they are given ([`set_max_width`]: the terminal's, or
//! `COLUMNS`): the widest text columns are cut, the cut marked with `…`. Id columns
//! are never cut (an id must still resolve when pasted). `-o wide` turns cutting off.

use crate::output::{BOLD, DIM, paint};
use anstyle::Style;
use std::sync::OnceLock;

/// The width tables must fit; `None`: no limit (`-o wide`, or output not to a terminal).
static MAX_WIDTH: OnceLock<Option<usize>> = OnceLock::new();

/// Columns never cut: what they hold is pasted into other commands.
const UNCUT: &[&str] = &["REQUEST", "APPROVAL", "SESSION", "ID"];
/// A cut column keeps at least this many characters (or its header's).
const MIN_CUT: usize = 6;

/// Sets the width every table fits (once, at start).
pub fn set_max_width(w: Option<usize>) {
    let _ = MAX_WIDTH.set(w);
}

fn max_width() -> Option<usize> {
    MAX_WIDTH.get().copied().flatten()
}

/// One table cell: text and the style to paint it in.
#[derive(Clone, Debug, Default)]
pub struct Cell {
    pub text: String,
    pub style: Style,
}

/// A plain cell.
pub fn cell(text: impl Into<String>) -> Cell {
    Cell {
        text: text.into(),
        style: Style::new(),
    }
}

/// A cell painted in `style`.
pub fn styled(style: Style, text: impl Into<String>) -> Cell {
    Cell {
        text: text.into(),
        style,
    }
}

/// A cell holding a record id: short (the type prefix and the first
/// [`SHORT_ID`] characters, which resolve back like git's) when tables fit a
/// width, in full with `-o wide` or when output is not to a terminal.
pub fn id(id: impl std::fmt::Display) -> Cell {
    cell(short_id(&id.to_string()))
}

/// Characters of an id kept after its type prefix in a short id: the creation
/// millisecond (10) and 4 random characters.
pub const SHORT_ID: usize = 14;

/// `req_01m8cw42hk4jewt46cgh7vhff2` → `req_01m8cw42hk4jew` when ids are shortened.
pub fn short_id(s: &str) -> String {
    if max_width().is_none() {
        return s.to_string();
    }
    match s.split_once('_') {
        // Only the kinds commands resolve back (and workers, named, never typed).
        Some((kind @ ("req" | "apr" | "wrk"), rest)) if rest.len() > SHORT_ID => {
            format!("{kind}_{}", &rest[..SHORT_ID])
        }
        _ => s.to_string(),
    }
}

/// A dimmed cell.
pub fn dim(text: impl Into<String>) -> Cell {
    styled(DIM, text)
}

#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Row>,
    indent: usize,
}

#[derive(Debug)]
enum Row {
    Cells(Vec<Cell>),
    /// A free line under the previous row (not part of the columns).
    Note(String),
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            indent: 2,
        }
    }

    /// Indents every line by `n` spaces (default 2), counted in the width it fits.
    pub fn indent(mut self, n: usize) -> Self {
        self.indent = n;
        self
    }

    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(Row::Cells(cells));
    }

    /// A line printed as is under the last row (events under a request, hints).
    pub fn note(&mut self, text: impl Into<String>) {
        self.rows.push(Row::Note(text.into()));
    }

    /// The rendered lines: the header, then one line per row or note.
    pub fn lines(&self) -> Vec<String> {
        self.lines_within(max_width())
    }

    /// The rendered lines, cut to fit `max` columns when given.
    pub fn lines_within(&self, max: Option<usize>) -> Vec<String> {
        let widths = self.widths();
        let widths = match max {
            Some(max) => self.fit(widths, max),
            None => widths,
        };
        let pad = " ".repeat(self.indent);
        let header: Vec<Cell> = self
            .headers
            .iter()
            .map(|h| styled(BOLD, h.clone()))
            .collect();
        let mut out = vec![format!("{pad}{}", render(&header, &widths))];
        for row in &self.rows {
            match row {
                Row::Cells(cells) => {
                    let cells: Vec<Cell> = cells
                        .iter()
                        .enumerate()
                        .map(|(i, c)| cut(c, widths.get(i).copied().unwrap_or(usize::MAX)))
                        .collect();
                    out.push(format!("{pad}{}", render(&cells, &widths)))
                }
                Row::Note(text) => out.push(format!("{pad}{text}")),
            }
        }
        out
    }

    /// Narrows the widest cuttable columns, one character at a time, until a row
    /// fits in `max` (or nothing more can be cut).
    fn fit(&self, mut widths: Vec<usize>, max: usize) -> Vec<usize> {
        let total =
            |w: &[usize]| self.indent + w.iter().sum::<usize>() + 2 * w.len().saturating_sub(1);
        let floor: Vec<usize> = widths
            .iter()
            .enumerate()
            .map(|(i, w)| match self.headers.get(i) {
                Some(h) if UNCUT.contains(&h.as_str()) => *w,
                Some(h) => (*w).min(MIN_CUT.max(width(h))),
                None => (*w).min(MIN_CUT),
            })
            .collect();
        while total(&widths) > max {
            let widest = (0..widths.len())
                .filter(|&i| widths[i] > floor[i])
                .max_by_key(|&i| (widths[i], i));
            match widest {
                Some(i) => widths[i] -= 1,
                None => break,
            }
        }
        widths
    }

    fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            if let Row::Cells(cells) = row {
                for (i, c) in cells.iter().enumerate() {
                    if i >= widths.len() {
                        widths.push(0);
                    }
                    widths[i] = widths[i].max(width(&c.text));
                }
            }
        }
        widths
    }
}

fn render(cells: &[Cell], widths: &[usize]) -> String {
    let used = cells
        .iter()
        .rposition(|c| !c.text.is_empty())
        .map_or(0, |i| i + 1);
    let cells = &cells[..used];
    let last = cells.len().saturating_sub(1);
    let parts: Vec<String> = cells
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let text = if i == last {
                c.text.clone()
            } else {
                let fill = widths[i].saturating_sub(width(&c.text));
                format!("{}{}", c.text, " ".repeat(fill))
            };
            if c.style == Style::new() {
                text
            } else {
                paint(c.style, text)
            }
        })
        .collect();
    parts.join("  ").trim_end().to_string()
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// `c` cut to `w` characters, the cut marked with `…`.
fn cut(c: &Cell, w: usize) -> Cell {
    if width(&c.text) <= w {
        return c.clone();
    }
    let kept: String = c.text.chars().take(w.saturating_sub(1)).collect();
    Cell {
        text: format!("{kept}…"),
        style: c.style,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_last_is_not_padded() {
        let mut t = Table::new(&["ID", "STATUS", "NOTE"]);
        t.row(vec![cell("req_1"), cell("ok"), cell("x")]);
        t.row(vec![cell("r"), cell("waiting"), cell("")]);
        t.note("  #1 event");
        let text: Vec<String> = t
            .lines()
            .iter()
            .map(|l| anstream::adapter::strip_str(l).to_string())
            .collect();
        assert_eq!(
            text,
            vec![
                "  ID     STATUS   NOTE",
                "  req_1  ok       x",
                "  r      waiting",
                "    #1 event",
            ]
        );
    }

    #[test]
    fn a_table_fits_its_width_cutting_text_not_ids() {
        let mut t = Table::new(&["REQUEST", "AGENT", "DETAIL"]);
        t.row(vec![
            cell("req_01m8cw42hk4jewt46cgh7vhff2"),
            cell("assistant → researcher → writer"),
            cell("model call failed: scripted model: agent `broken` has no turn 2"),
        ]);
        let lines: Vec<String> = t
            .lines_within(Some(80))
            .iter()
            .map(|l| anstream::adapter::strip_str(l).to_string())
            .collect();
        for l in &lines {
            assert!(
                l.chars().count() <= 80,
                "{l:?} is {} wide",
                l.chars().count()
            );
        }
        assert!(
            lines[1].starts_with("  req_01m8cw42hk4jewt46cgh7vhff2  "),
            "{lines:?}"
        );
        assert!(lines[1].ends_with('…'), "the cut is marked: {lines:?}");
        // Wide enough: nothing is cut.
        let wide: Vec<String> = t.lines_within(Some(200));
        assert!(!wide.iter().any(|l| l.contains('…')), "{wide:?}");
        assert_eq!(wide, t.lines_within(None));
    }
}
