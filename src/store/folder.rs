//! Object storage in a local folder: a key is a relative path. Objects are written to a
//! temporary file in the same folder, synced, then renamed (or, for `put_if_absent`, hard-linked)
//! into place, so a reader sees a file whole or not at all, even after a kill.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;

use super::objects::{Head, Listed, Multipart, ObjectStore};
use crate::artifacts::write_atomic;
use crate::error::InputError;

/// Temporary files carry this in their name; listings skip them.
const TEMP_MARK: &str = ".tmp-";

#[derive(Debug, Clone)]
pub struct Folder {
    root: PathBuf,
}

impl Folder {
    /// The folder `root`, created by the first write.
    pub fn open(root: &Path) -> anyhow::Result<Folder> {
        if root.exists() && !root.is_dir() {
            return Err(InputError::in_file(root, "the model store is not a folder")
                .hint("give the path of a folder (it is created when the first model is stored)")
                .into());
        }
        Ok(Folder { root: root.to_path_buf() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> PathBuf {
        key.split('/').fold(self.root.clone(), |path, part| path.join(part))
    }

    /// Every file under `dir`, as keys relative to the root.
    fn walk(&self, dir: &Path, listed: &mut Vec<Listed>) -> anyhow::Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("listing {}", dir.display()))),
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry.file_type().with_context(|| format!("listing {}", dir.display()))?;
            if kind.is_dir() {
                self.walk(&entry.path(), listed)?;
            } else if !name.contains(TEMP_MARK) {
                let relative = entry.path().strip_prefix(&self.root).expect("under the root").to_path_buf();
                let parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                listed.push(Listed { key: parts.join("/"), size });
            }
        }
        Ok(())
    }
}

impl ObjectStore for Folder {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn url(&self, key: &str) -> String {
        if key.is_empty() {
            self.root.display().to_string()
        } else {
            self.path(key).display().to_string()
        }
    }

    fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let path = self.path(key);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
        }
    }

    fn put(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        write_atomic(&self.path(key), |w| w.write_all(&bytes))?;
        Ok(())
    }

    fn put_if_absent(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<bool> {
        let path = self.path(key);
        let temp = temp_beside(&path);
        let linked = (|| {
            fs::create_dir_all(path.parent().expect("a key has a folder"))?;
            let mut file = File::create(&temp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            // A link, unlike a rename, fails when the target exists: the file appears complete,
            // and only for the first writer.
            match fs::hard_link(&temp, &path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e),
            }
        })();
        let _ = fs::remove_file(&temp);
        linked.with_context(|| format!("creating {}", path.display()))
    }

    fn delete(&self, key: &str) -> anyhow::Result<()> {
        let path = self.path(key);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                Err(anyhow::Error::new(e).context(format!("removing {}", path.display())))
            }
            _ => Ok(()),
        }
    }

    fn head(&self, key: &str) -> anyhow::Result<Option<Head>> {
        let path = self.path(key);
        match fs::metadata(&path) {
            Ok(meta) => Ok(Some(Head { size: meta.len(), sha256: None, last_modified: meta.modified().ok() })),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
        }
    }

    fn list(&self, prefix: &str) -> anyhow::Result<Vec<Listed>> {
        let mut listed = Vec::new();
        self.walk(&self.root, &mut listed)?;
        listed.retain(|o| o.key.starts_with(prefix));
        Ok(listed)
    }

    fn upload_file(&self, key: &str, path: &Path, _sha256: &str, _multipart: Multipart) -> anyhow::Result<()> {
        let mut source = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        write_atomic(&self.path(key), |w| std::io::copy(&mut source, w).map(drop))?;
        Ok(())
    }

    fn lock_poll(&self) -> Duration {
        Duration::from_millis(20)
    }
}

/// A temporary name beside `path`, unique across processes and threads.
fn temp_beside(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let unique = format!(".{name}{TEMP_MARK}{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    path.with_file_name(unique)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_put_if_absent_wins_and_temporary_files_are_never_listed() {
        let dir = tempfile::tempdir().unwrap();
        let folder = Folder::open(&dir.path().join("store")).unwrap();
        assert!(folder.list("").unwrap().is_empty());
        assert!(folder.put_if_absent("a/.lock", b"first".to_vec()).unwrap());
        assert!(!folder.put_if_absent("a/.lock", b"second".to_vec()).unwrap());
        assert_eq!(folder.get("a/.lock").unwrap().unwrap(), b"first");
        fs::write(dir.path().join("store/a/.x.tmp-1-1"), b"half").unwrap();
        folder.put("b", b"12".to_vec()).unwrap();
        let mut listed = folder.list("").unwrap();
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(listed, [Listed { key: "a/.lock".into(), size: 5 }, Listed { key: "b".into(), size: 2 }]);
        assert_eq!(folder.list("a/").unwrap().len(), 1);
        folder.delete("a/.lock").unwrap();
        folder.delete("a/.lock").unwrap();
        assert!(folder.head("a/.lock").unwrap().is_none());
    }

    #[test]
    fn a_file_is_not_a_store_folder() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        assert!(Folder::open(&file).unwrap_err().to_string().contains("not a folder"));
    }
}
