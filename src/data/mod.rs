//! FER-2013 in memory and on disk: the three splits, their manifest, and the compact cache
//! that `fer-lab data import` writes and training reads.
//!
//! Importers (one file per source format) live in [`import`]; the burn `Dataset` / `Batcher`
//! glue and augmentation used during training live in [`batcher`] and [`augment`].

pub mod augment;
pub mod batcher;
pub mod cache;
pub mod import;

use crate::emotion::{Emotion, NUM_CLASSES};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Side of a FER-2013 image in pixels.
pub const IMAGE_SIDE: usize = 48;
/// Pixels in one 48×48 grayscale image.
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
/// The canonical FER-2013 split sizes: Training, PublicTest, PrivateTest.
pub const CANONICAL_SIZES: [usize; 3] = [28_709, 3_589, 3_589];

/// A split of the data under fer-lab's protocol: train on `Train`, select on `Val`, report `Test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The images of one split, stored contiguously so a batch is a few memcpys away.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SplitImages {
    pixels: Vec<u8>,
    labels: Vec<Emotion>,
}

impl SplitImages {
    pub fn with_capacity(n: usize) -> Self {
        SplitImages {
            pixels: Vec::with_capacity(n * IMAGE_PIXELS),
            labels: Vec::with_capacity(n),
        }
    }

    pub fn push(&mut self, pixels: &[u8; IMAGE_PIXELS], label: Emotion) {
        self.pixels.extend_from_slice(pixels);
        self.labels.push(label);
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The 48×48 row-major pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8; IMAGE_PIXELS] {
        self.pixels[i * IMAGE_PIXELS..(i + 1) * IMAGE_PIXELS]
            .try_into()
            .expect("slice has IMAGE_PIXELS bytes")
    }

    pub fn label(&self, i: usize) -> Emotion {
        self.labels[i]
    }

    pub fn labels(&self) -> &[Emotion] {
        &self.labels
    }

    pub(crate) fn raw_pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// Builds a split from raw parts; `pixels` must hold `labels.len()` images.
    pub(crate) fn from_parts(pixels: Vec<u8>, labels: Vec<Emotion>) -> Self {
        assert_eq!(pixels.len(), labels.len() * IMAGE_PIXELS);
        SplitImages { pixels, labels }
    }

    /// Images per class, in class-id order.
    pub fn class_counts(&self) -> [usize; NUM_CLASSES] {
        let mut counts = [0; NUM_CLASSES];
        for label in &self.labels {
            counts[label.id() as usize] += 1;
        }
        counts
    }

    /// A new split holding the images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> SplitImages {
        let mut out = SplitImages::with_capacity(indices.len());
        for &i in indices {
            out.push(self.image(i), self.label(i));
        }
        out
    }
}

/// Where the images came from and what fer-lab found out about them while importing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Version of the cache format (bumped when the binary layout changes).
    pub format_version: u32,
    /// The source as the user named it.
    pub source: String,
    /// Which of the known layouts the source had.
    pub layout: Layout,
    /// Content hash of all three splits (labels and pixels); part of every run id.
    pub fingerprint: String,
    /// Images per split and class.
    pub counts: BTreeMap<Split, [usize; NUM_CLASSES]>,
    /// Whether `test` is FER-2013's PrivateTest, the split published results are reported on.
    pub test_is_private_test: bool,
    /// Set when val was carved out of train because the source had no separate val split.
    pub val_carved: Option<ValCarve>,
    /// Exact duplicate images found by content hash.
    pub duplicates: DuplicateReport,
    /// Facts a user should know when reading results on this data.
    pub notes: Vec<String>,
    /// Things that look wrong for the protocol.
    pub warnings: Vec<String>,
    /// Images resized to 48×48 on import (only with `--resize`).
    pub resized: usize,
}

/// How a val split was carved out of train.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValCarve {
    pub fraction: f64,
    pub seed: u64,
}

/// The layouts fer-lab recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Kaggle challenge CSV with `Usage` = Training / PublicTest / PrivateTest.
    KaggleCsv,
    /// Folder tree `train/ validation/ test/` (Training / PublicTest / PrivateTest).
    ThreeSplitTree,
    /// Kaggle "FER-2013" folder tree `train/ test/`, whose test merges both test splits.
    KaggleTrainTestTree,
    /// "Face Expression Recognition Dataset": `images/train/ images/validation/`.
    FaceExpressionTree,
}

impl Layout {
    pub fn describe(self) -> &'static str {
        match self {
            Layout::KaggleCsv => "Kaggle challenge CSV (emotion,pixels,Usage)",
            Layout::ThreeSplitTree => "folder tree train/ validation/ test/",
            Layout::KaggleTrainTestTree => "Kaggle FER-2013 folder tree train/ test/",
            Layout::FaceExpressionTree => {
                "Face Expression Recognition Dataset (images/train/ images/validation/)"
            }
        }
    }
}

/// Exact duplicates across and within splits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DuplicateReport {
    /// Distinct images that occur in both train and val, train and test, val and test.
    pub train_val: usize,
    pub train_test: usize,
    pub val_test: usize,
    /// Extra copies of an image inside the same split.
    pub within_split: usize,
    /// Distinct duplicated images whose copies carry different labels.
    pub conflicting_labels: usize,
}

impl DuplicateReport {
    pub fn cross_split(&self) -> usize {
        self.train_val + self.train_test + self.val_test
    }
}

/// The whole data set of a sweep: three splits and their manifest.
#[derive(Debug, Clone)]
pub struct FerData {
    pub manifest: Manifest,
    pub train: SplitImages,
    pub val: SplitImages,
    pub test: SplitImages,
}

impl FerData {
    pub fn split(&self, split: Split) -> &SplitImages {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }

    /// Short fingerprint used in run ids and tables.
    pub fn short_fingerprint(&self) -> &str {
        &self.manifest.fingerprint[..16]
    }
}

/// Renders the per-split, per-class count table that `data import` and `data info` print.
pub fn count_table(counts: &BTreeMap<Split, [usize; NUM_CLASSES]>) -> comfy_table::Table {
    let mut table = crate::table::new_table();
    let mut header = vec!["split".to_string()];
    header.extend(Emotion::ALL.iter().map(|e| e.name().to_string()));
    header.push("total".into());
    table.set_header(header);
    for (split, row) in counts {
        let mut cells = vec![split.to_string()];
        cells.extend(row.iter().map(|n| n.to_string()));
        cells.push(row.iter().sum::<usize>().to_string());
        table.add_row(cells);
    }
    crate::table::align_numbers(&mut table, 1);
    table
}

/// Why data could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
    #[error(transparent)]
    Import(#[from] import::ImportError),
}

/// Opens data for training: an imported cache as is, or any source `data import` reads,
/// imported in memory with default options (the second return is `true` then).
pub fn open(path: &std::path::Path) -> Result<(FerData, bool), DataError> {
    if cache::is_cache(path) {
        return Ok((cache::read(path)?, false));
    }
    Ok((
        import::import(path, import::ImportOptions::default())?,
        true,
    ))
}
