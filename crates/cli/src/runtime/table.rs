//! A small column-aligned table: widths from the text, styles applied after padding
//! (so escape codes never skew the alignment). The last column is never padded.

use crate::output::{BOLD, DIM, paint};
use anstyle::Style;

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

    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(Row::Cells(cells));
    }

    /// A line printed as is under the last row (events under a request, hints).
    pub fn note(&mut self, text: impl Into<String>) {
        self.rows.push(Row::Note(text.into()));
    }

    /// The rendered lines: the header, then one line per row or note.
    pub fn lines(&self) -> Vec<String> {
        let widths = self.widths();
        let pad = " ".repeat(self.indent);
        let header: Vec<Cell> = self
            .headers
            .iter()
            .map(|h| styled(BOLD, h.clone()))
            .collect();
        let mut out = vec![format!("{pad}{}", render(&header, &widths))];
        for row in &self.rows {
            match row {
                Row::Cells(cells) => out.push(format!("{pad}{}", render(cells, &widths))),
                Row::Note(text) => out.push(format!("{pad}{text}")),
            }
        }
        out
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
}
