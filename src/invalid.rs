//! What validation at the edge reports: a knob and why its value is refused. A leaf module, so
//! that every part's config (models in `src/model/`, the run in `src/config.rs`) can validate
//! itself without importing the part that composes it.

/// A value out of range, with the key it belongs to (`model.width`, `lr`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidValue {
    pub key: String,
    pub message: String,
}

impl InvalidValue {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> InvalidValue {
        InvalidValue {
            key: key.into(),
            message: message.into(),
        }
    }
}
