//! `fer-lab data import`: any FER-2013 download in, three protocol-checked splits out.
//!
//! One file per source format ([`csv`], [`tree`]; archives and folders are unpacked by
//! [`source`]). This module decides what each source's splits *mean* under the standard
//! protocol (train on Training, select on PublicTest, report PrivateTest) and guards it:
//! it carves a seeded, stratified val split where a source has none, says when "test" is
//! not PrivateTest, reports exact duplicates across splits and warns on non-canonical sizes.

pub mod csv;
pub mod source;
pub mod tree;

use super::cache::{FORMAT_VERSION, fingerprint};
use super::{
    CANONICAL_SIZES, DuplicateReport, FerData, IMAGE_PIXELS, Layout, Manifest, Split, SplitImages,
    ValCarve,
};
use crate::emotion::Emotion;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use source::RawSource;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tree::FolderSplit;

/// Everything that can be wrong with a source; each message names the file, line or folder.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    // The io::Error is part of the message, not a `source`: anyhow would print it twice.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{0}: not a data source fer-lab knows (a .csv, a folder, a .zip, a .tar.gz or a .tar)")]
    UnknownSource(PathBuf),
    #[error("{path}: unreadable archive: {why}")]
    Archive { path: PathBuf, why: String },
    #[error("{0}: no images (.jpg, .png, .bmp) and no FER-2013 CSV found")]
    NoImages(String),
    #[error("{origin}: ambiguous source: {why}")]
    AmbiguousSource { origin: String, why: String },
    #[error("{origin}: unrecognised layout: {why}")]
    UnknownLayout { origin: String, why: String },
    #[error("{origin}: wrong CSV header `{found}`: expected `emotion,pixels,Usage`")]
    CsvHeader { origin: String, found: String },
    #[error("{origin} line {line}: {why}")]
    Csv {
        origin: String,
        line: u64,
        why: String,
    },
    #[error("{path}: not a readable image: {why}")]
    Image { path: String, why: String },
    #[error(
        "{path}: image is {width}×{height}, not 48×48 (pass --resize to center-crop and resize)"
    )]
    WrongSize {
        path: String,
        width: u32,
        height: u32,
    },
    #[error(
        "{origin}: class folder `{folder}` is not one of angry, disgust, fear, happy, sad, surprise, neutral"
    )]
    UnknownClassFolder { origin: String, folder: String },
    #[error("{origin}: class folder `{folder}` is empty")]
    EmptyClassFolder { origin: String, folder: String },
    #[error("{origin}: no test split (found {found}); fer-lab needs a held-out test set")]
    NoTestSplit { origin: String, found: String },
    #[error("{origin}: the {split} split is empty")]
    EmptySplit { origin: String, split: Split },
    #[error("--val-fraction {0} must be in (0, 0.5]")]
    BadValFraction(f64),
}

impl ImportError {
    pub(crate) fn io(path: &Path, err: std::io::Error) -> ImportError {
        ImportError::Io {
            path: path.to_path_buf(),
            err,
        }
    }
}

/// Knobs of an import.
#[derive(Debug, Clone, Copy)]
pub struct ImportOptions {
    /// Center-crop and resize images that are not 48×48 instead of refusing them.
    pub resize: bool,
    /// Share of each class of train moved to val when the source has no val split.
    pub val_fraction: f64,
    /// Seed of that stratified carve.
    pub split_seed: u64,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            resize: false,
            val_fraction: 0.1,
            split_seed: 2013,
        }
    }
}

/// Reads `src` (any supported layout) into protocol-checked splits.
pub fn import(src: &Path, opts: ImportOptions) -> Result<FerData, ImportError> {
    if !(opts.val_fraction > 0.0 && opts.val_fraction <= 0.5) {
        return Err(ImportError::BadValFraction(opts.val_fraction));
    }
    let mut notes = Vec::new();
    let mut resized = 0;
    let (origin, layout, splits) = match source::open(src)? {
        RawSource::Csv { origin, bytes } => {
            let splits = csv::parse(&origin, &bytes)?;
            (origin, Layout::KaggleCsv, splits)
        }
        RawSource::Tree {
            origin,
            files,
            dirs,
        } => {
            let images = tree::read(&origin, &files, &dirs, opts.resize)?;
            drop(files);
            notes.extend(images.notes);
            resized = images.resized;
            if !images.root.is_empty() {
                notes.push(format!("data set root inside the source: {}", images.root));
            }
            let (layout, splits) = tree_splits(&origin, images.splits)?;
            (origin, layout, splits)
        }
    };
    protocol(origin, layout, splits, notes, resized, opts)
}

/// What each folder means under the protocol, per layout.
fn tree_splits(
    origin: &str,
    folders: BTreeMap<FolderSplit, Vec<(Emotion, [u8; IMAGE_PIXELS])>>,
) -> Result<(Layout, BTreeMap<Split, SplitImages>), ImportError> {
    let has = |s| folders.contains_key(&s);
    let layout = match (
        has(FolderSplit::Train),
        has(FolderSplit::Validation),
        has(FolderSplit::Test),
    ) {
        (true, true, true) => Layout::ThreeSplitTree,
        (true, false, true) => Layout::KaggleTrainTestTree,
        (true, true, false) => Layout::FaceExpressionTree,
        _ => {
            return Err(ImportError::UnknownLayout {
                origin: origin.to_string(),
                why: format!(
                    "split folders {:?}; expected train/ with validation/ and/or test/",
                    folders.keys().collect::<Vec<_>>()
                ),
            });
        }
    };
    let mut splits = BTreeMap::new();
    for (folder, images) in folders {
        let split = match (layout, folder) {
            (_, FolderSplit::Train) => Split::Train,
            // The Face Expression Recognition Dataset's validation/ is its only held-out set:
            // it becomes test, so that nothing is ever selected on it.
            (Layout::FaceExpressionTree, FolderSplit::Validation) => Split::Test,
            (_, FolderSplit::Validation) => Split::Val,
            (_, FolderSplit::Test) => Split::Test,
        };
        let mut out = SplitImages::with_capacity(images.len());
        for (label, pixels) in &images {
            out.push(pixels, *label);
        }
        splits.insert(split, out);
    }
    Ok((layout, splits))
}

fn protocol(
    origin: String,
    layout: Layout,
    mut splits: BTreeMap<Split, SplitImages>,
    mut notes: Vec<String>,
    resized: usize,
    opts: ImportOptions,
) -> Result<FerData, ImportError> {
    let mut warnings = Vec::new();
    let test = splits
        .remove(&Split::Test)
        .ok_or_else(|| ImportError::NoTestSplit {
            origin: origin.clone(),
            found: splits
                .keys()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let mut train = splits.remove(&Split::Train).unwrap_or_default();
    let source_has_val = splits.contains_key(&Split::Val);
    let val_carved = if source_has_val {
        None
    } else {
        let (kept, carved) = carve_val(&train, opts.val_fraction, opts.split_seed);
        train = kept;
        splits.insert(Split::Val, carved);
        notes.push(format!(
            "val carved out of train: {:.0} % of each class, seed {} (the source has no separate validation split)",
            opts.val_fraction * 100.0,
            opts.split_seed
        ));
        Some(ValCarve {
            fraction: opts.val_fraction,
            seed: opts.split_seed,
        })
    };
    let val = splits.remove(&Split::Val).unwrap_or_default();
    for (split, images) in [
        (Split::Train, &train),
        (Split::Val, &val),
        (Split::Test, &test),
    ] {
        if images.is_empty() {
            return Err(ImportError::EmptySplit {
                origin: origin.clone(),
                split,
            });
        }
    }

    let test_is_private_test = match layout {
        Layout::KaggleCsv | Layout::ThreeSplitTree => true,
        Layout::KaggleTrainTestTree => {
            notes.push(format!(
                "test/ ({} images) merges FER-2013's PublicTest and PrivateTest: results on it are not PrivateTest numbers",
                test.len()
            ));
            false
        }
        Layout::FaceExpressionTree => {
            notes.push(format!(
                "validation/ ({} images) is this source's only held-out set: fer-lab uses it as test; results on it are not PrivateTest numbers",
                test.len()
            ));
            false
        }
    };
    let sizes = [train.len(), val.len(), test.len()];
    if test_is_private_test && sizes != CANONICAL_SIZES {
        warnings.push(format!(
            "split sizes {} / {} / {} differ from canonical FER-2013 {} / {} / {}: a subset or another data set, not comparable to published FER-2013 results",
            sizes[0],
            sizes[1],
            sizes[2],
            CANONICAL_SIZES[0],
            CANONICAL_SIZES[1],
            CANONICAL_SIZES[2]
        ));
    }
    let duplicates = find_duplicates(&train, &val, &test);
    if duplicates.cross_split() > 0 {
        warnings.push(format!(
            "exact duplicate images across splits: {} train∩val, {} train∩test, {} val∩test (by content)",
            duplicates.train_val, duplicates.train_test, duplicates.val_test
        ));
    }
    if duplicates.within_split > 0 {
        notes.push(format!(
            "{} extra copies of images inside a split; {} duplicated images carry conflicting labels",
            duplicates.within_split, duplicates.conflicting_labels
        ));
    }
    for (split, images) in [
        (Split::Train, &train),
        (Split::Val, &val),
        (Split::Test, &test),
    ] {
        let missing: Vec<&str> = images
            .class_counts()
            .iter()
            .zip(Emotion::ALL)
            .filter(|(n, _)| **n == 0)
            .map(|(_, e)| e.name())
            .collect();
        if !missing.is_empty() {
            warnings.push(format!("{split} has no {} images", missing.join(", ")));
        }
    }
    if resized > 0 {
        notes.push(format!("{resized} images resized to 48×48 (--resize)"));
    }

    let counts = [
        (Split::Train, &train),
        (Split::Val, &val),
        (Split::Test, &test),
    ]
    .into_iter()
    .map(|(s, images)| (s, images.class_counts()))
    .collect();
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        source: origin,
        layout,
        fingerprint: fingerprint(&train, &val, &test),
        counts,
        test_is_private_test,
        val_carved,
        duplicates,
        notes,
        warnings,
        resized,
    };
    Ok(FerData {
        manifest,
        train,
        val,
        test,
    })
}

/// Moves `fraction` of each class of `train` (seeded shuffle) into a new val split.
pub fn carve_val(train: &SplitImages, fraction: f64, seed: u64) -> (SplitImages, SplitImages) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut to_val = vec![false; train.len()];
    for class in Emotion::ALL {
        let mut idx: Vec<usize> = (0..train.len())
            .filter(|&i| train.label(i) == class)
            .collect();
        idx.shuffle(&mut rng);
        let take = (idx.len() as f64 * fraction).round() as usize;
        for &i in &idx[..take] {
            to_val[i] = true;
        }
    }
    let (val_idx, train_idx): (Vec<usize>, Vec<usize>) = (0..train.len()).partition(|&i| to_val[i]);
    (train.select(&train_idx), train.select(&val_idx))
}

fn find_duplicates(train: &SplitImages, val: &SplitImages, test: &SplitImages) -> DuplicateReport {
    // Keyed by the pixels themselves: exact by construction, no hash collisions to doubt.
    let mut seen: HashMap<&[u8; IMAGE_PIXELS], Vec<(Split, Emotion)>> = HashMap::new();
    for (split, images) in [
        (Split::Train, train),
        (Split::Val, val),
        (Split::Test, test),
    ] {
        for i in 0..images.len() {
            seen.entry(images.image(i))
                .or_default()
                .push((split, images.label(i)));
        }
    }
    let mut report = DuplicateReport::default();
    for copies in seen.values().filter(|c| c.len() > 1) {
        let mut per_split = [0usize; 3];
        for (split, _) in copies {
            per_split[*split as usize] += 1;
        }
        let [tr, va, te] = per_split.map(|n| n > 0);
        report.train_val += usize::from(tr && va);
        report.train_test += usize::from(tr && te);
        report.val_test += usize::from(va && te);
        report.within_split += per_split.iter().map(|n| n.saturating_sub(1)).sum::<usize>();
        let first = copies[0].1;
        report.conflicting_labels += usize::from(copies.iter().any(|(_, l)| *l != first));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_of(labels: &[(Emotion, u8)]) -> SplitImages {
        let mut s = SplitImages::default();
        for (label, value) in labels {
            s.push(&[*value; IMAGE_PIXELS], *label);
        }
        s
    }

    #[test]
    fn carve_is_stratified_and_seeded() {
        let mut labels = Vec::new();
        for i in 0..100u8 {
            labels.push((Emotion::Happy, i));
        }
        for i in 0..20u8 {
            labels.push((Emotion::Disgust, 100 + i));
        }
        let train = split_of(&labels);
        let (kept, val) = carve_val(&train, 0.1, 7);
        assert_eq!(val.class_counts()[Emotion::Happy as usize], 10);
        assert_eq!(val.class_counts()[Emotion::Disgust as usize], 2);
        assert_eq!(kept.len(), 108);
        let (_, again) = carve_val(&train, 0.1, 7);
        assert_eq!(val, again);
        let (_, other) = carve_val(&train, 0.1, 8);
        assert_ne!(val, other);
    }

    #[test]
    fn duplicates_are_counted_per_split_pair() {
        let train = split_of(&[(Emotion::Happy, 1), (Emotion::Happy, 2), (Emotion::Sad, 2)]);
        let val = split_of(&[(Emotion::Happy, 1)]);
        let test = split_of(&[(Emotion::Fear, 3), (Emotion::Fear, 1)]);
        let d = find_duplicates(&train, &val, &test);
        assert_eq!(d.train_val, 1);
        assert_eq!(d.train_test, 1);
        assert_eq!(d.val_test, 1);
        assert_eq!(d.within_split, 1);
        assert_eq!(d.conflicting_labels, 2);
    }
}
