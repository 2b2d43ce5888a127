//! Folder trees of class folders: `train/ validation/ test/` (this is how `../shared/data`
//! ships FER-2013), Kaggle's "FER-2013" `train/ test/`, and the "Face Expression Recognition
//! Dataset" `images/train/ images/validation/` — found wherever their root is.

use super::ImportError;
use super::source::RawFile;
use crate::data::{IMAGE_PIXELS, IMAGE_SIDE};
use crate::emotion::Emotion;
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// The split folder names users have, before fer-lab decides what each one means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FolderSplit {
    Train,
    Validation,
    Test,
}

impl FolderSplit {
    fn from_name(name: &str) -> Option<FolderSplit> {
        match name.to_ascii_lowercase().as_str() {
            "train" | "training" => Some(FolderSplit::Train),
            "validation" | "val" | "valid" | "publictest" | "public_test" => {
                Some(FolderSplit::Validation)
            }
            "test" | "testing" | "privatetest" | "private_test" => Some(FolderSplit::Test),
            _ => None,
        }
    }
}

/// One image placed in the tree: split folder, class folder and its bytes.
struct Placed<'a> {
    split: FolderSplit,
    class: Emotion,
    file: &'a RawFile,
}

/// Decoded images per split folder, in file-name order.
#[derive(Debug)]
pub struct TreeImages {
    pub root: String,
    pub splits: BTreeMap<FolderSplit, Vec<(Emotion, [u8; IMAGE_PIXELS])>>,
    pub resized: usize,
    pub notes: Vec<String>,
}

/// Finds the data set root in `files`, checks the class folders and decodes every image.
pub fn read(
    origin: &str,
    files: &[RawFile],
    dirs: &[String],
    resize: bool,
) -> Result<TreeImages, ImportError> {
    // Group files by the root that sits above `<split>/<class>/<file>`.
    let mut roots: BTreeMap<String, Vec<Placed<'_>>> = BTreeMap::new();
    let mut unplaced = Vec::new();
    for file in files {
        let parts: Vec<&str> = file.rel.split('/').collect();
        let n = parts.len();
        let split = (n >= 3)
            .then(|| FolderSplit::from_name(parts[n - 3]))
            .flatten();
        let Some(split) = split else {
            unplaced.push(file.rel.as_str());
            continue;
        };
        let class = Emotion::from_folder_name(parts[n - 2]).ok_or_else(|| {
            ImportError::UnknownClassFolder {
                origin: origin.to_string(),
                folder: parts[..n - 1].join("/"),
            }
        })?;
        roots
            .entry(parts[..n - 3].join("/"))
            .or_default()
            .push(Placed { split, class, file });
    }
    let (root, placed, mut notes) = pick_root(origin, roots)?;
    if !unplaced.is_empty() {
        notes.push(format!(
            "ignored {} image(s) outside <split>/<class>/ folders, e.g. {}",
            unplaced.len(),
            unplaced[0]
        ));
    }
    check_class_folders(origin, &root, &placed, dirs)?;

    let decoded: Vec<(FolderSplit, Emotion, [u8; IMAGE_PIXELS], bool)> = placed
        .par_iter()
        .map(|p| {
            let (pixels, was_resized) = decode(origin, p.file, resize)?;
            Ok((p.split, p.class, pixels, was_resized))
        })
        .collect::<Result<_, ImportError>>()?;
    let mut splits: BTreeMap<FolderSplit, Vec<_>> = BTreeMap::new();
    let mut resized = 0;
    for (split, class, pixels, was_resized) in decoded {
        resized += usize::from(was_resized);
        splits.entry(split).or_default().push((class, pixels));
    }
    Ok(TreeImages {
        root,
        splits,
        resized,
        notes,
    })
}

type Picked<'a> = (String, Vec<Placed<'a>>, Vec<String>);

/// One root is the data set. A second root is tolerated only when it is an exact copy of the
/// first (some Kaggle zips ship `images/` twice); anything else is ambiguous.
fn pick_root<'a>(
    origin: &str,
    roots: BTreeMap<String, Vec<Placed<'a>>>,
) -> Result<Picked<'a>, ImportError> {
    let mut roots: Vec<_> = roots.into_iter().collect();
    if roots.is_empty() {
        return Err(ImportError::UnknownLayout {
            origin: origin.to_string(),
            why: "no images in <split>/<class>/ folders (expected e.g. train/angry/x.jpg)".into(),
        });
    }
    // Shallowest root first.
    roots.sort_by_key(|(root, _)| {
        (
            root.matches('/').count() + usize::from(!root.is_empty()),
            root.clone(),
        )
    });
    let (root, placed) = roots.remove(0);
    let shape = |root: &str, placed: &[Placed<'_>]| -> BTreeSet<String> {
        placed
            .iter()
            .map(|p| p.file.rel[root.len()..].trim_start_matches('/').to_string())
            .collect()
    };
    let main_shape = shape(&root, &placed);
    let mut notes = Vec::new();
    for (other, other_placed) in &roots {
        if shape(other, other_placed) != main_shape {
            return Err(ImportError::AmbiguousSource {
                origin: origin.to_string(),
                why: format!(
                    "it holds two different data sets, at `{}` and `{other}`; import one of them",
                    display_root(&root)
                ),
            });
        }
        notes.push(format!(
            "ignored `{other}`, an exact copy of `{}`",
            display_root(&root)
        ));
    }
    Ok((root, placed, notes))
}

fn display_root(root: &str) -> &str {
    if root.is_empty() { "." } else { root }
}

/// A class folder that exists but holds no image is a broken download, not a class with
/// zero examples.
fn check_class_folders(
    origin: &str,
    root: &str,
    placed: &[Placed<'_>],
    dirs: &[String],
) -> Result<(), ImportError> {
    let prefix = if root.is_empty() {
        String::new()
    } else {
        format!("{root}/")
    };
    let used: BTreeSet<&str> = placed
        .iter()
        .filter_map(|p| p.file.rel.rsplit_once('/').map(|(dir, _)| dir))
        .collect();
    for dir in dirs {
        let Some(rest) = dir.strip_prefix(&prefix) else {
            continue;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.len() == 2
            && FolderSplit::from_name(parts[0]).is_some()
            && !used.contains(dir.as_str())
        {
            if Emotion::from_folder_name(parts[1]).is_none() {
                return Err(ImportError::UnknownClassFolder {
                    origin: origin.to_string(),
                    folder: dir.clone(),
                });
            }
            return Err(ImportError::EmptyClassFolder {
                origin: origin.to_string(),
                folder: dir.clone(),
            });
        }
    }
    Ok(())
}

/// Decodes one image to 48×48 grayscale; other sizes are an error unless `resize`.
fn decode(
    origin: &str,
    file: &RawFile,
    resize: bool,
) -> Result<([u8; IMAGE_PIXELS], bool), ImportError> {
    let image = image::load_from_memory(&file.bytes).map_err(|e| ImportError::Image {
        path: format!("{origin}/{}", file.rel),
        why: e.to_string(),
    })?;
    let (w, h) = (image.width(), image.height());
    let side = IMAGE_SIDE as u32;
    let (gray, resized) = if (w, h) == (side, side) {
        (image.to_luma8(), false)
    } else if resize {
        (to_48x48(&image), true)
    } else {
        return Err(ImportError::WrongSize {
            path: format!("{origin}/{}", file.rel),
            width: w,
            height: h,
        });
    };
    let pixels: [u8; IMAGE_PIXELS] = gray
        .into_raw()
        .try_into()
        .expect("48×48 luma image has 2304 bytes");
    Ok((pixels, resized))
}

/// Center-crops to a square and resizes to 48×48 grayscale.
pub fn to_48x48(image: &image::DynamicImage) -> image::GrayImage {
    let (w, h) = (image.width(), image.height());
    let side = w.min(h);
    let cropped = image.crop_imm((w - side) / 2, (h - side) / 2, side, side);
    let side48 = IMAGE_SIDE as u32;
    cropped
        .resize_exact(side48, side48, image::imageops::FilterType::Triangle)
        .to_luma8()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(value: u8, side: u32) -> Vec<u8> {
        let img = image::GrayImage::from_pixel(side, side, image::Luma([value]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn file(rel: &str, value: u8) -> RawFile {
        RawFile {
            rel: rel.into(),
            bytes: png(value, 48),
        }
    }

    #[test]
    fn classes_map_by_folder_name_under_any_root() {
        let files = vec![
            file("dl/images/train/neutral/a.png", 60),
            file("dl/images/train/sad/b.png", 40),
            file("dl/images/validation/angry/c.png", 0),
        ];
        let t = read("src", &files, &[], false).unwrap();
        assert_eq!(t.root, "dl/images");
        let train = &t.splits[&FolderSplit::Train];
        assert_eq!(train[0].0, Emotion::Neutral);
        assert_eq!(train[0].1[0], 60);
        assert_eq!(train[1].0, Emotion::Sad);
        assert_eq!(t.splits[&FolderSplit::Validation][0].0, Emotion::Angry);
    }

    #[test]
    fn unknown_and_empty_class_folders_are_errors() {
        let files = vec![file("train/contempt/a.png", 1)];
        let err = read("src", &files, &[], false).unwrap_err().to_string();
        assert!(err.contains("train/contempt"), "{err}");

        let files = vec![file("train/happy/a.png", 1)];
        let dirs = vec!["train/happy".to_string(), "train/fear".to_string()];
        let err = read("src", &files, &dirs, false).unwrap_err().to_string();
        assert!(err.contains("train/fear") && err.contains("empty"), "{err}");
    }

    #[test]
    fn wrong_size_needs_resize_flag() {
        let files = vec![RawFile {
            rel: "train/happy/big.png".into(),
            bytes: png(200, 96),
        }];
        let err = read("src", &files, &[], false).unwrap_err().to_string();
        assert!(err.contains("96×96") && err.contains("--resize"), "{err}");
        let t = read("src", &files, &[], true).unwrap();
        assert_eq!(t.resized, 1);
        assert_eq!(t.splits[&FolderSplit::Train][0].1[0], 200);
    }

    #[test]
    fn corrupt_image_is_named() {
        let files = vec![RawFile {
            rel: "train/happy/broken.jpg".into(),
            bytes: b"not a jpeg".to_vec(),
        }];
        let err = read("src", &files, &[], false).unwrap_err().to_string();
        assert!(err.contains("src/train/happy/broken.jpg"), "{err}");
    }

    #[test]
    fn two_different_roots_are_ambiguous_but_copies_are_not() {
        let files = vec![file("a/train/happy/x.png", 1), file("b/train/sad/y.png", 1)];
        assert!(read("src", &files, &[], false).is_err());
        let files = vec![
            file("images/images/train/happy/x.png", 1),
            file("images/train/happy/x.png", 1),
        ];
        let t = read("src", &files, &[], false).unwrap();
        assert_eq!(t.root, "images");
        assert_eq!(t.splits[&FolderSplit::Train].len(), 1);
    }
}
