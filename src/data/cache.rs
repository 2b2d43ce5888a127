//! The on-disk cache written by `fer-lab data import`.
//!
//! A cache is a directory with `manifest.json` and one `<split>.bin` per split. Each `.bin` is
//! an 8-byte magic, the image count (u32 LE), one label byte per image and then the raw 48×48
//! pixels: reading the full data set is three sequential reads, no decoding.
//! Caches are written into a sibling temporary directory (`.<name>.tmp-<pid>`) and renamed into
//! place, so a failed or interrupted import never leaves a half-written cache behind: a signal
//! handler removes the temporary directory ([`abandon_write`]), and since SIGKILL cannot be
//! caught, the next import of the same cache removes those whose process is gone.

use super::{FerData, IMAGE_PIXELS, Manifest, Split, SplitImages};
use crate::emotion::Emotion;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

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

/// Whether an I/O error is the machine's (a full disk, a quota, a file size limit, a failing
/// device) rather than a bad path or file the user gave.
pub fn is_runtime_io(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull
            | io::ErrorKind::QuotaExceeded
            | io::ErrorKind::FileTooLarge
            | io::ErrorKind::WriteZero
    ) || e.raw_os_error() == Some(libc::EIO)
}

impl CacheError {
    /// See [`is_runtime_io`].
    pub fn is_runtime(&self) -> bool {
        matches!(self, CacheError::Io { err, .. } if is_runtime_io(err))
    }
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

/// The temporary directory being written, if any: what a signal handler must remove.
static WRITING: Mutex<Option<PathBuf>> = Mutex::new(None);
/// Set by [`abandon_write`]: the writer takes no further step.
static ABANDONED: AtomicBool = AtomicBool::new(false);

fn writing() -> MutexGuard<'static, Option<PathBuf>> {
    WRITING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// For a SIGINT / SIGTERM handler: waits until no file is being written, removes the
/// temporary directory of a write in progress, and returns a guard that keeps any write from
/// going on; the caller exits while holding it.
pub fn abandon_write() -> MutexGuard<'static, Option<PathBuf>> {
    ABANDONED.store(true, Ordering::SeqCst);
    let mut guard = writing();
    if let Some(tmp) = guard.take() {
        let _ = fs::remove_dir_all(&tmp);
    }
    guard
}

/// What a write left behind: temporary directories of earlier imports of the same cache
/// whose process is gone (killed with SIGKILL, or a crash), removed.
#[derive(Debug, Default)]
pub struct Written {
    pub removed_stale: Vec<PathBuf>,
}

/// Removes `.<name>.tmp-<pid>` in `parent` for every pid that is not a live process (this
/// one excepted: its own directory is handled by [`write`]).
fn remove_stale_temps(parent: &Path, name: &str) -> Vec<PathBuf> {
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|p| p.parse::<i64>().ok())
        else {
            continue;
        };
        if pid == i64::from(std::process::id()) || crate::process::alive(pid) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() && fs::remove_dir_all(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// Writes `data` to `dir` atomically: everything goes to a temporary sibling first.
pub fn write(dir: &Path, data: &FerData) -> Result<Written, CacheError> {
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
    let removed_stale = remove_stale_temps(&parent, &name);
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    *writing() = Some(tmp.clone());
    let result = write_into(&tmp, data).and_then(|()| {
        let mut active = still_writing(&tmp)?;
        if dir.exists() {
            fs::remove_dir_all(dir).map_err(io_err(dir))?;
        }
        fs::rename(&tmp, dir).map_err(io_err(dir))?;
        *active = None;
        Ok(())
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
        *writing() = None;
    }
    result.map(|()| Written { removed_stale })
}

/// The lock of [`WRITING`] for one step of a write; each step (a file, the rename) holds it,
/// so a signal handler removes the directory between steps, never half-way through one.
fn still_writing(tmp: &Path) -> Result<MutexGuard<'static, Option<PathBuf>>, CacheError> {
    // The mutex is not fair: without this, the writer would take it again for its next step
    // before the handler's thread woke, and the handler would only get it once all was written.
    // The handler exits the process once it has removed the directory.
    while ABANDONED.load(Ordering::SeqCst) {
        std::thread::park();
    }
    let guard = writing();
    if guard.as_deref() != Some(tmp) {
        return Err(CacheError::Io {
            path: tmp.to_path_buf(),
            err: io::Error::new(io::ErrorKind::Interrupted, "the write was abandoned"),
        });
    }
    Ok(guard)
}

fn write_into(tmp: &Path, data: &FerData) -> Result<(), CacheError> {
    if tmp.exists() {
        fs::remove_dir_all(tmp).map_err(io_err(tmp))?;
    }
    fs::create_dir_all(tmp).map_err(io_err(tmp))?;
    for split in Split::ALL {
        let _step = still_writing(tmp)?;
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
    let _step = still_writing(tmp)?;
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
