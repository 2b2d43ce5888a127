//! The on-disk cache written by `fer-lab data import`.
//!
//! A cache is a directory with `manifest.json` and one `<split>.bin` per split. Each `.bin` is
//! an 8-byte magic, the image count (u32 LE), one label byte per image and then the raw 48×48
//! pixels: reading the full data set is three sequential reads, no decoding.
//! Caches are written into a sibling temporary directory and renamed into place, so a failed
//! or interrupted import never leaves a half-written cache behind.

use super::{FerData, IMAGE_PIXELS, Manifest, Split, SplitImages};
use crate::emotion::Emotion;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Version of the binary layout; bump when it changes.
pub const FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"FERLAB\x00\x01";
const MANIFEST: &str = "manifest.json";

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    // The io::Error is part of the message, not a `source`: anyhow would print it twice.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: io::Error },
    #[error(
        "{0}: not a fer-lab data cache (no manifest.json); import it with `fer-lab data import`"
    )]
    NotACache(PathBuf),
    #[error("{path}: corrupt cache file: {why}")]
    Corrupt { path: PathBuf, why: String },
    #[error(
        "{0}: exists and is not a fer-lab data cache; refusing to overwrite it (choose another --out)"
    )]
    WouldClobber(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |err| CacheError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// Whether `dir` holds a fer-lab cache.
pub fn is_cache(dir: &Path) -> bool {
    dir.join(MANIFEST).is_file()
}

/// Content hash of the three splits (labels and pixels, in order).
pub fn fingerprint(train: &SplitImages, val: &SplitImages, test: &SplitImages) -> String {
    let mut hasher = Sha256::new();
    for (split, images) in [
        (Split::Train, train),
        (Split::Val, val),
        (Split::Test, test),
    ] {
        hasher.update(split.as_str().as_bytes());
        hasher.update((images.len() as u64).to_le_bytes());
        hasher.update(images.labels().iter().map(|l| l.id()).collect::<Vec<_>>());
        hasher.update(images.raw_pixels());
    }
    hex(&hasher.finalize())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `data` to `dir` atomically: everything goes to a temporary sibling first.
pub fn write(dir: &Path, data: &FerData) -> Result<(), CacheError> {
    if dir.exists() && !is_cache(dir) {
        let empty = fs::read_dir(dir).map_err(io_err(dir))?.next().is_none();
        if !empty {
            return Err(CacheError::WouldClobber(dir.to_path_buf()));
        }
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "cache".into());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = write_into(&tmp, data).and_then(|()| {
        if dir.exists() {
            fs::remove_dir_all(dir).map_err(io_err(dir))?;
        }
        fs::rename(&tmp, dir).map_err(io_err(dir))
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

fn write_into(tmp: &Path, data: &FerData) -> Result<(), CacheError> {
    if tmp.exists() {
        fs::remove_dir_all(tmp).map_err(io_err(tmp))?;
    }
    fs::create_dir_all(tmp).map_err(io_err(tmp))?;
    for split in Split::ALL {
        let path = tmp.join(format!("{split}.bin"));
        let images = data.split(split);
        let mut out = io::BufWriter::new(fs::File::create(&path).map_err(io_err(&path))?);
        let labels: Vec<u8> = images.labels().iter().map(|l| l.id()).collect();
        let count = u32::try_from(images.len()).expect("fewer than 4G images");
        out.write_all(MAGIC)
            .and_then(|()| out.write_all(&count.to_le_bytes()))
            .and_then(|()| out.write_all(&labels))
            .and_then(|()| out.write_all(images.raw_pixels()))
            .and_then(|()| out.flush())
            .map_err(io_err(&path))?;
    }
    let path = tmp.join(MANIFEST);
    let json = serde_json::to_vec_pretty(&data.manifest).expect("manifest serialises");
    fs::write(&path, json).map_err(io_err(&path))
}

/// Reads a cache written by [`write`].
pub fn read(dir: &Path) -> Result<FerData, CacheError> {
    if !is_cache(dir) {
        return Err(CacheError::NotACache(dir.to_path_buf()));
    }
    let path = dir.join(MANIFEST);
    let bytes = fs::read(&path).map_err(io_err(&path))?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| CacheError::Corrupt {
        path: path.clone(),
        why: e.to_string(),
    })?;
    if manifest.format_version != FORMAT_VERSION {
        return Err(CacheError::Corrupt {
            path,
            why: format!(
                "cache format {} but this fer-lab reads {FORMAT_VERSION}; re-run `fer-lab data import`",
                manifest.format_version
            ),
        });
    }
    let train = read_split(&dir.join("train.bin"))?;
    let val = read_split(&dir.join("val.bin"))?;
    let test = read_split(&dir.join("test.bin"))?;
    Ok(FerData {
        manifest,
        train,
        val,
        test,
    })
}

fn read_split(path: &Path) -> Result<SplitImages, CacheError> {
    let corrupt = |why: String| CacheError::Corrupt {
        path: path.to_path_buf(),
        why,
    };
    let bytes = fs::read(path).map_err(io_err(path))?;
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(corrupt("bad header".into()));
    }
    let count = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
    let expected = 12 + count + count * IMAGE_PIXELS;
    if bytes.len() != expected {
        return Err(corrupt(format!(
            "{} bytes, expected {expected} for {count} images",
            bytes.len()
        )));
    }
    let labels = bytes[12..12 + count]
        .iter()
        .map(|&id| Emotion::from_id(id).ok_or_else(|| corrupt(format!("label id {id}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SplitImages::from_parts(
        bytes[12 + count..].to_vec(),
        labels,
    ))
}
