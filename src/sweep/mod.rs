//! Sweep files: TOML that names the data, a base config and axes to grid over.
//!
//! ```toml
//! name = "baseline"            # optional; defaults to the file stem
//! data = "data/fer2013"        # an imported cache, or any source `data import` reads
//! seeds = [1, 2, 3]            # every cell runs once per seed
//!
//! [base]                       # the config every run starts from (see RunConfig)
//! epochs = 30
//!
//! [grid]                       # each key is an axis; runs are the cartesian product
//! lr = [1e-3, 3e-4]
//! augment.rotation = [0, 10]
//! ```
//!
//! Parsing and validation happen here, once; errors name the file, the line and the key.

pub mod expand;
pub mod file;
pub mod search;

pub use expand::{PlannedRun, run_id};
pub use file::{Sweep, SweepError};
