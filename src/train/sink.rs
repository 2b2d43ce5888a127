//! Where training puts each finished epoch, and who decides whether it goes on.
//!
//! Training knows how to train; whether an epoch is worth keeping somewhere, and whether the run
//! should stop (pruned by its sweep, a graceful stop asked for), is its caller's business. The
//! worker's sink writes to SQLite and applies the sweep's pruning rule; a test's sink keeps the
//! epochs in memory. Training itself stops a run whose loss diverged: that is a fact about the
//! training, not a decision of the sink.

use crate::store::EpochRow;

/// Why a sink asks training to stop before its last epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The pruning rule judged the run not worth finishing.
    Pruned,
    /// A graceful stop was asked for (first Ctrl-C): the epoch finished and was checkpointed.
    Interrupted,
    /// The sink could not keep the epoch (SQLite refused the write): a run whose curves are
    /// lost must not pass for a finished one.
    SinkFailed(String),
}

/// A sink's answer to a finished epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    Stop(StopReason),
}

/// Receives every finished epoch of a run, in order, as it ends.
///
/// Called on burn-train's event thread (hence `Send`), before the epoch's checkpoint is
/// chosen, so whatever the sink records for epoch e exists before its checkpoint does.
pub trait EpochSink: Send {
    /// `epochs` holds the whole run so far, the finished epoch last; the epochs of an attempt
    /// this one resumed come first. The verdict is ignored for an epoch whose loss diverged, and
    /// after the run was already asked to stop.
    fn epoch(&mut self, epochs: &[EpochRow]) -> Verdict;
}
