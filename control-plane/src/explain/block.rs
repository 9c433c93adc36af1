//! Block rendering: a policy or route as a title and labelled fields, wrapped to the report's width.

/// Lines are wrapped to this width (long names may still overflow).
const WIDTH: usize = 92;
/// Width of the field labels of a block, indentation included.
const LABEL: usize = 16;

/// One policy or route: a title, labelled fields, and a one-line verdict for the summary.
pub(super) struct Block {
    pub(super) kind: &'static str,
    pub(super) name: String,
    pub(super) verdict: String,
    fields: Vec<(&'static str, String)>,
}

impl Block {
    pub(super) fn new(kind: &'static str, name: String) -> Self {
        Block {
            kind,
            name,
            verdict: String::new(),
            fields: Vec::new(),
        }
    }

    pub(super) fn field(&mut self, label: &'static str, text: impl Into<String>) {
        self.fields.push((label, text.into()));
    }

    pub(super) fn render(&self, out: &mut String) {
        out.push_str(&format!("{} {}\n", self.kind, self.name));
        for (label, text) in &self.fields {
            let head = format!("  {label}:");
            let mut first = true;
            for paragraph in text.split('\n') {
                for line in wrap(paragraph, WIDTH - LABEL) {
                    let lead = if first { head.as_str() } else { "" };
                    out.push_str(&format!("{lead:<LABEL$}{line}\n"));
                    first = false;
                }
            }
        }
    }
}

/// Greedy word wrap; a word longer than `width` gets a line of its own.
pub(super) fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}
