//! Output rendering for every command: plain aligned tables (a small
//! printer of our own), JSON or JSON lines via serde_json. A result type is a
//! `serde::Serialize` struct that also implements [`TableRow`]; lists render
//! as JSON arrays (JSON lines: one compact object per line), single results
//! as JSON objects (JSON lines: one line), and both as tables with one row
//! per item.

use serde::Serialize;
use std::io::Write;

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns with a header line.
    Table,
    /// Indented JSON: a list is one array.
    Json,
    /// JSON lines: one compact object per line, for line-oriented tools.
    Jsonl,
}

impl crate::spelling::Spelled for Format {
    const SPELLINGS: &'static [(Format, &'static str, &'static str)] = &[
        (Format::Table, "table", "Aligned columns with a header line"),
        (Format::Json, "json", "Indented JSON: a list is one array"),
        (
            Format::Jsonl,
            "jsonl",
            "JSON lines: one compact object per line, for line-oriented tools",
        ),
    ];
}

impl Format {
    /// A JSON form (`json` or `jsonl`).
    pub fn is_json(self) -> bool {
        self != Format::Table
    }
}

/// A result that can be shown as a table row.
pub trait TableRow {
    /// Column headers, in order.
    fn headers() -> Vec<&'static str>;
    /// The row's cells, in header order.
    fn cells(&self) -> Vec<String>;
}

/// A plain table: headers and rows, columns padded to the widest cell.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Self {
        Table {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// The table as text, one line per row, columns separated by two
    /// spaces, no trailing spaces.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                let w = cell.chars().count();
                match widths.get_mut(i) {
                    Some(cur) => *cur = (*cur).max(w),
                    None => widths.push(w),
                }
            }
        }
        let mut out = String::new();
        out.push_str(&format_line(&self.headers, &widths));
        for row in &self.rows {
            out.push_str(&format_line(row, &widths));
        }
        out
    }
}

/// One line with cells padded to `widths` (the last cell is not padded).
fn format_line(cells: &[String], widths: &[usize]) -> String {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            line.push_str("  ");
        }
        line.push_str(cell);
        if i + 1 < cells.len() {
            let pad = widths
                .get(i)
                .copied()
                .unwrap_or(0)
                .saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    let trimmed = line.trim_end().len();
    line.truncate(trimmed);
    line.push('\n');
    line
}

/// Makes a cell printable on one line (control characters escaped).
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out
}

/// A list of results: a table with one row each, or a JSON array.
pub fn render_list<T: TableRow + Serialize>(items: &[T], format: Format) -> String {
    match format {
        Format::Table => {
            let mut t = Table::new(T::headers());
            for item in items {
                t.push(item.cells());
            }
            t.render()
        }
        Format::Json => json(&items),
        Format::Jsonl => items.iter().map(json_line).collect(),
    }
}

/// One result: a one-row table, or a JSON object.
pub fn render_one<T: TableRow + Serialize>(item: &T, format: Format) -> String {
    render_value(item, format)
        .unwrap_or_else(|| render_list(std::slice::from_ref(item), Format::Table))
}

/// One result in a JSON form (indented, or on one line for `jsonl`); `None` for a table,
/// which the caller lays out.
pub fn render_value<T: Serialize + ?Sized>(value: &T, format: Format) -> Option<String> {
    match format {
        Format::Table => None,
        Format::Json => Some(json(value)),
        Format::Jsonl => Some(json_line(value)),
    }
}

/// A value as one line of JSON.
fn json_line<T: Serialize + ?Sized>(value: &T) -> String {
    let mut s = serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}

fn json<T: Serialize + ?Sized>(value: &T) -> String {
    let mut s =
        serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}

/// Prints results as they arrive (for `consume`): a table with fixed
/// minimum column widths, a JSON array with one object per line, or JSON
/// lines.
pub struct StreamWriter<W: Write> {
    out: W,
    format: Format,
    widths: Vec<usize>,
    headers: Vec<&'static str>,
    count: usize,
    started: bool,
}

impl<W: Write> StreamWriter<W> {
    /// `widths` are minimum column widths for the table form.
    pub fn new(out: W, format: Format, headers: Vec<&'static str>, widths: Vec<usize>) -> Self {
        StreamWriter {
            out,
            format,
            widths,
            headers,
            count: 0,
            started: false,
        }
    }

    fn start(&mut self) -> std::io::Result<()> {
        if !self.started {
            self.started = true;
            match self.format {
                Format::Table => {
                    let h: Vec<String> = self.headers.iter().map(|s| s.to_string()).collect();
                    self.out
                        .write_all(format_line(&h, &self.widths).as_bytes())?;
                }
                Format::Json => self.out.write_all(b"[")?,
                Format::Jsonl => {}
            }
        }
        Ok(())
    }

    /// Prints one item and flushes.
    pub fn item<T: TableRow + Serialize>(&mut self, item: &T) -> std::io::Result<()> {
        self.start()?;
        match self.format {
            Format::Table => {
                self.out
                    .write_all(format_line(&item.cells(), &self.widths).as_bytes())?;
            }
            Format::Json => {
                let sep = if self.count == 0 { "\n  " } else { ",\n  " };
                let obj = serde_json::to_string(item).map_err(std::io::Error::other)?;
                self.out.write_all(sep.as_bytes())?;
                self.out.write_all(obj.as_bytes())?;
            }
            Format::Jsonl => self.out.write_all(json_line(item).as_bytes())?,
        }
        self.count += 1;
        self.out.flush()
    }

    /// Closes the output (the JSON array) and returns how many items were printed.
    pub fn finish(mut self) -> std::io::Result<usize> {
        self.start()?;
        if self.format == Format::Json {
            self.out
                .write_all(if self.count == 0 { b"]\n" } else { b"\n]\n" })?;
        }
        self.out.flush()?;
        Ok(self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Row {
        name: String,
        n: u32,
    }

    impl TableRow for Row {
        fn headers() -> Vec<&'static str> {
            vec!["NAME", "N"]
        }
        fn cells(&self) -> Vec<String> {
            vec![self.name.clone(), self.n.to_string()]
        }
    }

    fn rows() -> Vec<Row> {
        vec![
            Row {
                name: "a".into(),
                n: 10,
            },
            Row {
                name: "longer".into(),
                n: 2,
            },
        ]
    }

    #[test]
    fn tables_are_aligned_without_trailing_spaces() {
        let text = render_list(&rows(), Format::Table);
        assert_eq!(text, "NAME    N\na       10\nlonger  2\n");
        let mut t = Table::new(["A", "B", "C"]);
        t.push(vec!["x".into(), "".into(), "".into()]);
        assert_eq!(t.render(), "A  B  C\nx\n");
    }

    #[test]
    fn json_lists_are_arrays_and_single_results_objects() {
        let v: serde_json::Value =
            serde_json::from_str(&render_list(&rows(), Format::Json)).unwrap();
        assert_eq!(v[1]["name"], "longer");
        assert_eq!(v[0]["n"], 10);
        let v: serde_json::Value =
            serde_json::from_str(&render_one(&rows()[0], Format::Json)).unwrap();
        assert_eq!(v["name"], "a");
        assert_eq!(render_list::<Row>(&[], Format::Json).trim(), "[]");
        assert_eq!(render_list::<Row>(&[], Format::Table), "NAME  N\n");
    }

    #[test]
    fn streamed_json_is_a_valid_array() {
        let mut buf = Vec::new();
        let mut w = StreamWriter::new(&mut buf, Format::Json, Row::headers(), vec![6, 3]);
        for r in rows() {
            w.item(&r).unwrap();
        }
        assert_eq!(w.finish().unwrap(), 2);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);

        let mut buf = Vec::new();
        let w = StreamWriter::new(&mut buf, Format::Json, Row::headers(), vec![]);
        assert_eq!(w.finish().unwrap(), 0);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert!(v.as_array().unwrap().is_empty());
    }

    #[test]
    fn json_lines_are_one_compact_object_per_line() {
        let text = render_list(&rows(), Format::Jsonl);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(second["name"], "longer");
        assert_eq!(render_list::<Row>(&[], Format::Jsonl), "");
        assert_eq!(
            render_one(&rows()[0], Format::Jsonl),
            "{\"name\":\"a\",\"n\":10}\n"
        );
        let mut buf = Vec::new();
        let mut w = StreamWriter::new(&mut buf, Format::Jsonl, Row::headers(), vec![]);
        for r in rows() {
            w.item(&r).unwrap();
        }
        assert_eq!(w.finish().unwrap(), 2);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "{\"name\":\"a\",\"n\":10}\n{\"name\":\"longer\",\"n\":2}\n"
        );
    }

    #[test]
    fn streamed_tables_use_minimum_widths() {
        let mut buf = Vec::new();
        let mut w = StreamWriter::new(&mut buf, Format::Table, Row::headers(), vec![6, 3]);
        w.item(&rows()[0]).unwrap();
        w.finish().unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), "NAME    N\na       10\n");
    }

    #[test]
    fn cells_are_kept_on_one_line() {
        assert_eq!(
            one_line("a\nb\t\"c\" it's ü\u{7}"),
            "a\\nb\\t\"c\" it's ü\\u{7}"
        );
    }
}
