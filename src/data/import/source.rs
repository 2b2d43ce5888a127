//! Reading a source as users download it — a CSV file, a folder, a `.zip` or a `.tar.gz` —
//! into one uniform list of files, so the layout code never cares where bytes came from.

use super::ImportError;
use std::fs;
use std::io::Read;
use std::path::Path;

/// A file found in a source, with its path relative to the source root ('/'-separated).
pub struct RawFile {
    pub rel: String,
    pub bytes: Vec<u8>,
}

/// The contents of a source, before any layout is recognised.
pub enum RawSource {
    /// A Kaggle-style CSV; `origin` names it in messages.
    Csv { origin: String, bytes: Vec<u8> },
    /// A tree of image files plus the directories seen (to find empty class folders).
    Tree {
        origin: String,
        files: Vec<RawFile>,
        dirs: Vec<String>,
    },
}

fn is_image(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".jpg", ".jpeg", ".png", ".bmp"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

fn is_csv(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".csv")
}

/// Hidden files and macOS resource forks (`._x.jpg`, `__MACOSX/`) are never data.
fn is_junk(rel: &str) -> bool {
    rel.split('/')
        .any(|c| c.starts_with('.') || c == "__MACOSX")
}

/// Opens `src` and reads every image (and CSV) file in it.
pub fn open(src: &Path) -> Result<RawSource, ImportError> {
    let origin = src.display().to_string();
    let meta = fs::metadata(src).map_err(|e| ImportError::io(src, e))?;
    let name = src
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let mut tree = Tree::default();
    if meta.is_dir() {
        read_dir(src, &mut tree)?;
    } else if is_csv(&name) {
        let bytes = fs::read(src).map_err(|e| ImportError::io(src, e))?;
        return Ok(RawSource::Csv { origin, bytes });
    } else if name.ends_with(".zip") {
        read_zip(src, &mut tree)?;
    } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        let file = fs::File::open(src).map_err(|e| ImportError::io(src, e))?;
        read_tar(src, flate2::read::GzDecoder::new(file), &mut tree)?;
    } else if name.ends_with(".tar") {
        let file = fs::File::open(src).map_err(|e| ImportError::io(src, e))?;
        read_tar(src, file, &mut tree)?;
    } else {
        return Err(ImportError::UnknownSource(src.to_path_buf()));
    }
    tree.into_source(origin)
}

#[derive(Default)]
struct Tree {
    files: Vec<RawFile>,
    csvs: Vec<RawFile>,
    dirs: Vec<String>,
}

impl Tree {
    fn add_file(
        &mut self,
        rel: String,
        read: impl FnOnce() -> std::io::Result<Vec<u8>>,
    ) -> std::io::Result<()> {
        if is_junk(&rel) {
            return Ok(());
        }
        if is_image(&rel) {
            self.files.push(RawFile {
                rel,
                bytes: read()?,
            });
        } else if is_csv(&rel) {
            self.csvs.push(RawFile {
                rel,
                bytes: read()?,
            });
        }
        Ok(())
    }

    fn add_dir(&mut self, rel: String) {
        let rel = rel.trim_end_matches('/').to_string();
        if !rel.is_empty() && !is_junk(&rel) {
            self.dirs.push(rel);
        }
    }

    fn into_source(mut self, origin: String) -> Result<RawSource, ImportError> {
        if !self.files.is_empty() {
            self.files.sort_by(|a, b| a.rel.cmp(&b.rel));
            // Directories are implied by files too (zip files often omit directory entries).
            for f in &self.files {
                if let Some((dir, _)) = f.rel.rsplit_once('/') {
                    self.dirs.push(dir.to_string());
                }
            }
            self.dirs.sort();
            self.dirs.dedup();
            return Ok(RawSource::Tree {
                origin,
                files: self.files,
                dirs: self.dirs,
            });
        }
        // No images: a download of the Kaggle challenge holds fer2013.csv beside a README.
        let mut csvs: Vec<_> = self
            .csvs
            .into_iter()
            .filter(|f| super::csv::looks_like_fer_csv(&f.bytes))
            .collect();
        match csvs.len() {
            0 => Err(ImportError::NoImages(origin)),
            1 => {
                let f = csvs.pop().expect("one csv");
                Ok(RawSource::Csv {
                    origin: format!("{origin}:{}", f.rel),
                    bytes: f.bytes,
                })
            }
            _ => Err(ImportError::AmbiguousSource {
                origin,
                why: format!(
                    "it holds {} FER-2013 CSV files ({}); import one of them directly",
                    csvs.len(),
                    csvs.iter()
                        .map(|f| f.rel.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }
}

fn read_dir(root: &Path, tree: &mut Tree) -> Result<(), ImportError> {
    for entry in walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            ImportError::io(&path, e.into())
        })?;
        let rel = entry
            .path()
            .strip_prefix(root)
            .expect("walkdir yields paths under root")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        if entry.file_type().is_dir() {
            tree.add_dir(rel);
        } else {
            let path = entry.path().to_path_buf();
            tree.add_file(rel, || fs::read(&path))
                .map_err(|e| ImportError::io(entry.path(), e))?;
        }
    }
    Ok(())
}

fn read_zip(src: &Path, tree: &mut Tree) -> Result<(), ImportError> {
    let file = fs::File::open(src).map_err(|e| ImportError::io(src, e))?;
    let archive_err = |why: String| ImportError::Archive {
        path: src.to_path_buf(),
        why,
    };
    let mut zip = zip::ZipArchive::new(file).map_err(|e| archive_err(e.to_string()))?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| archive_err(e.to_string()))?;
        let rel = entry.name().to_string();
        if entry.is_dir() {
            tree.add_dir(rel);
            continue;
        }
        let size = entry.size() as usize;
        tree.add_file(rel.clone(), || {
            let mut bytes = Vec::with_capacity(size);
            entry.read_to_end(&mut bytes).map(|_| bytes)
        })
        .map_err(|e| archive_err(format!("{rel}: {e}")))?;
    }
    Ok(())
}

fn read_tar(src: &Path, reader: impl Read, tree: &mut Tree) -> Result<(), ImportError> {
    let archive_err = |why: String| ImportError::Archive {
        path: src.to_path_buf(),
        why,
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| archive_err(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| archive_err(e.to_string()))?;
        let rel = entry
            .path()
            .map_err(|e| archive_err(e.to_string()))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        match entry.header().entry_type() {
            tar::EntryType::Directory => tree.add_dir(rel),
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size() as usize;
                tree.add_file(rel.clone(), || {
                    let mut bytes = Vec::with_capacity(size);
                    entry.read_to_end(&mut bytes).map(|_| bytes)
                })
                .map_err(|e| archive_err(format!("{rel}: {e}")))?;
            }
            _ => {}
        }
    }
    Ok(())
}
