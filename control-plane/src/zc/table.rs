//! Plain-text tables that fit a terminal width, laid out as `istioctl` lays out its tables: columns
//! padded to their widest cell and separated by one space. When the whole is too wide, cuttable columns
//! are cut, the widest (times its weight) first, with `…` marking what was cut: in the middle for names,
//! whose distinguishing suffix is kept, at the end for messages.

use std::io::{self, Write};

/// Tables are fitted to this many columns.
pub const WIDTH: usize = 80;

const GAP: &str = " ";

/// How a column's cells are cut when the table is too wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Never cut (short fixed values: IPs, protocols, counts).
    Never,
    /// Keep the beginning and the end: `reviews-v2-5…-fd6nx`.
    Middle,
    /// Keep the beginning: `waypoint "backend/wa…`.
    End,
}

#[derive(Debug, Clone)]
pub struct Column {
    pub header: &'static str,
    pub cut: Cut,
    /// How eagerly the column gives up width: a column of weight 2 is cut as if it were twice as wide.
    pub weight: usize,
}

impl Column {
    pub const fn new(header: &'static str, cut: Cut) -> Column {
        Column {
            header,
            cut,
            weight: 1,
        }
    }

    /// A column that is cut before wider columns of weight 1 (secondary information, e.g. node names).
    pub const fn weight(mut self, weight: usize) -> Column {
        self.weight = weight;
        self
    }
}

#[derive(Debug, Clone)]
pub struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: Vec<Column>) -> Table {
        Table {
            columns,
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are empty, extra cells are ignored.
    pub fn row(&mut self, mut cells: Vec<String>) {
        cells.resize(self.columns.len(), String::new());
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The column widths that fit `width` (as far as cutting allows).
    fn widths(&self, width: usize) -> Vec<usize> {
        let mut widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                self.rows
                    .iter()
                    .map(|r| chars(&r[i]))
                    .chain([chars(c.header)])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let total = |w: &[usize]| w.iter().sum::<usize>() + GAP.len() * w.len().saturating_sub(1);
        while total(&widths) > width {
            // Shrink the widest (by weight) column that may be cut and is wider than its header (and
            // than 6 characters, below which a cut name says nothing); the leftmost wins a tie.
            let candidate = self
                .columns
                .iter()
                .enumerate()
                .filter(|(i, c)| c.cut != Cut::Never && widths[*i] > chars(c.header).max(6))
                .max_by_key(|(i, c)| (widths[*i] * c.weight, usize::MAX - i))
                .map(|(i, _)| i);
            match candidate {
                Some(i) => widths[i] -= 1,
                None => break,
            }
        }
        widths
    }

    /// Writes the header and the rows, fitted to `width` columns; trailing spaces are trimmed.
    pub fn write(&self, out: &mut impl Write, width: usize) -> io::Result<()> {
        let widths = self.widths(width);
        let headers: Vec<String> = self.columns.iter().map(|c| c.header.to_string()).collect();
        for cells in std::iter::once(&headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, col)) in cells.iter().zip(&self.columns).enumerate() {
                if i > 0 {
                    line.push_str(GAP);
                }
                let cell = cut(cell, widths[i], col.cut);
                let pad = widths[i].saturating_sub(chars(&cell));
                line.push_str(&cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// `s` cut to `width` characters as `how` says (unchanged when it fits or must not be cut).
fn cut(s: &str, width: usize, how: Cut) -> String {
    let n = chars(s);
    if n <= width || width == 0 {
        return s.to_string();
    }
    match how {
        Cut::Never => s.to_string(),
        Cut::End => {
            let mut out: String = s.chars().take(width - 1).collect();
            out.push('…');
            out
        }
        Cut::Middle => {
            let keep = width - 1;
            let tail = keep / 2;
            let head = keep - tail;
            let mut out: String = s.chars().take(head).collect();
            out.push('…');
            out.extend(s.chars().skip(n - tail));
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &Table, width: usize) -> String {
        let mut out = Vec::new();
        t.write(&mut out, width).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn cells_are_cut_as_their_column_says() {
        assert_eq!(
            cut("reviews-v2-5b667bcbf8-fd6nx", 15, Cut::Middle),
            "reviews…8-fd6nx"
        );
        assert_eq!(cut("waypoint is not ready", 10, Cut::End), "waypoint …");
        assert_eq!(cut("10.244.0.44", 5, Cut::Never), "10.244.0.44");
        assert_eq!(cut("short", 10, Cut::Middle), "short");
    }

    #[test]
    fn wide_tables_shrink_their_widest_cuttable_column() {
        let mut t = Table::new(vec![
            Column::new("NAME", Cut::Middle),
            Column::new("IP", Cut::Never),
            Column::new("MESSAGE", Cut::End),
        ]);
        t.row(vec![
            "productpage-v1-6b8f5c6c8d-abcde".into(),
            "10.244.0.44".into(),
            "a message".into(),
        ]);
        assert_eq!(
            render(&t, 80),
            "NAME                            IP          MESSAGE\n\
             productpage-v1-6b8f5c6c8d-abcde 10.244.0.44 a message\n"
        );
        assert_eq!(
            render(&t, 34),
            "NAME         IP          MESSAGE\n\
             produc…abcde 10.244.0.44 a message\n"
        );
    }

    #[test]
    fn heavier_columns_give_way_first() {
        let mut t = Table::new(vec![
            Column::new("POD", Cut::Middle),
            Column::new("NODE", Cut::Middle).weight(2),
        ]);
        t.row(vec![
            "reviews-v2-5b667bcbf8-fd6nx".into(),
            "kind-control-plane".into(),
        ]);
        assert_eq!(
            render(&t, 40),
            "POD                        NODE\n\
             reviews-v2-5b…7bcbf8-fd6nx kind-c…-plane\n"
        );
    }

    #[test]
    fn headers_and_short_columns_are_never_cut() {
        let mut t = Table::new(vec![
            Column::new("NAMESPACE", Cut::Middle),
            Column::new("X", Cut::Never),
        ]);
        t.row(vec!["frontend".into(), "0123456789".into()]);
        assert_eq!(render(&t, 5), "NAMESPACE X\nfrontend  0123456789\n");
    }
}
