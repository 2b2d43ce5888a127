//! fer-lab: sweeps of facial-emotion CNNs on FER-2013, trained with burn + burn-train and
//! recorded in SQLite.
//!
//! Where things live:
//! - [`emotion`]: the seven classes and the name → id mapping.
//! - [`data`]: importing FER-2013 ([`data::import`], one file per format), the cache,
//!   augmentation and burn's dataset/batcher glue.
//! - [`config`]: the resolved config of one run; [`sweep`]: sweep files and grid expansion.
//! - [`model`]: one file per network; [`loss`]: one file per loss; [`train`]: burn-train
//!   wiring, optimizers, learning-rate schedules, evaluation.
//! - [`scheduler`]: devices, slots, leases and pruning; [`worker`]: one run in its own process;
//!   [`store`]: SQLite and migrations.
//! - [`report`]: leaderboards; [`table`]: table / Markdown / CSV / JSON output.
//! - [`bench`]: training-step throughput per model and device.

pub mod bench;
pub mod cluster;
pub mod config;
pub mod dashboard;
pub mod data;
pub mod device;
pub mod emotion;
pub mod invalid;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod predict;
pub mod process;
pub mod progress;
pub mod pruning;
pub mod report;
pub mod scheduler;
pub mod stats;
pub mod store;
pub mod sweep;
pub mod table;
pub mod train;
pub mod worker;
