//! The sections of `fer-lab report`, one file each, in the order they print.
//!
//! To add a section: a file here with `pub fn section(a: &Analysis, top: Option<usize>,
//! human: bool) -> Option<Section>` (`None` when the sweep has nothing for it; `human`
//! formats numbers for reading, otherwise each number gets its own column), and its line in
//! [`ALL`]. Every format (table, Markdown, CSV, JSON, HTML) renders it from there.

pub mod cells;
pub mod classes;
pub mod confusion;
pub mod effects;
pub mod ensemble;

use super::analysis::{Analysis, Section};

/// Builds one section of a sweep's analysis.
pub type Build = fn(&Analysis, Option<usize>, bool) -> Option<Section>;

/// Every section, in print order.
pub const ALL: &[Build] = &[
    cells::section,
    effects::section,
    classes::section,
    confusion::section,
    ensemble::section,
];
