//! The summary at the head of an unfiltered report: one verdict line per policy and route.

use super::block::{Block, wrap};

/// Width of the summary.
const SUMMARY_WIDTH: usize = 100;

pub(super) fn summary(out: &mut String, blocks: &[Block]) {
    out.push_str("Summary\n");
    let names: Vec<String> = blocks
        .iter()
        .map(|b| {
            let kind = if b.kind == "HTTPRoute" {
                "route"
            } else {
                "policy"
            };
            format!("{kind} {}", b.name)
        })
        .collect();
    let width = names.iter().map(String::len).max().unwrap_or(0) + 4;
    for (name, block) in names.iter().zip(blocks) {
        let lines = wrap(&block.verdict, SUMMARY_WIDTH.saturating_sub(width).max(30));
        for (i, line) in lines.iter().enumerate() {
            let lead = if i == 0 { name.as_str() } else { "" };
            out.push_str(&format!("  {lead:<w$}{line}\n", w = width - 2));
        }
    }
}
