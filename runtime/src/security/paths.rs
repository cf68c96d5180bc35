//! Host files a REST caller may name: only under directories the operator
//! lists, checked after every symlink is resolved, and read only as
//! regular files of bounded size.
//!
//! **Invariants:** a path is allowed only when its canonical form (no `..`,
//! no symlink left) lies inside the canonical form of an allowed directory,
//! so neither `..` nor a symlink placed in an allowed directory leads out of
//! it. [`AllowedDirs::read`] opens that canonical path without following a
//! final symlink, checks that it is a regular file no larger than the cap
//! before reading, and reads at most the cap: `/dev/zero`, a FIFO or a
//! sparse 1 TiB file cost nothing.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why a path was refused. Its text is the same whether the file is
/// missing, outside the allowed directories or unreadable, so a refusal
/// tells a caller nothing about the host's files; the exact cause is
/// logged for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{path}\" is not a readable file under {setting}")]
pub struct PathRefusal {
    /// The path as the caller gave it.
    pub path: String,
    /// The setting that lists the allowed directories.
    pub setting: &'static str,
}

/// Directories under which REST callers may name files; empty allows none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedDirs {
    /// Canonical directories.
    dirs: Vec<PathBuf>,
    /// The setting they come from, for messages (`server.secrets.file_dirs`).
    setting: &'static str,
}

impl AllowedDirs {
    /// Canonicalizes the operator's directories; each must exist.
    pub fn new(setting: &'static str, dirs: &[String]) -> Result<Self, String> {
        let dirs = dirs
            .iter()
            .map(|dir| {
                let canonical = std::fs::canonicalize(dir)
                    .map_err(|e| format!("directory \"{dir}\" cannot be used: {e}"))?;
                if canonical.is_dir() {
                    Ok(canonical)
                } else {
                    Err(format!("\"{dir}\" is not a directory"))
                }
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self { dirs, setting })
    }

    /// No directory is allowed.
    pub fn none(setting: &'static str) -> Self {
        Self {
            dirs: Vec::new(),
            setting,
        }
    }

    /// Whether no directory is allowed.
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// The canonical path of `path` when it lies in an allowed directory.
    pub fn check(&self, path: &str) -> Result<PathBuf, PathRefusal> {
        let refusal = |cause: &str| {
            tracing::warn!(path, setting = self.setting, cause, "file refused");
            PathRefusal {
                path: path.to_owned(),
                setting: self.setting,
            }
        };
        if self.dirs.is_empty() {
            return Err(refusal("no directory is allowed"));
        }
        let canonical = std::fs::canonicalize(path).map_err(|e| refusal(&e.to_string()))?;
        if self.dirs.iter().any(|dir| canonical.starts_with(dir)) {
            Ok(canonical)
        } else {
            Err(refusal("outside the allowed directories"))
        }
    }

    /// Reads a file that [`check`](Self::check) allows: a regular file of
    /// at most `cap` bytes.
    pub fn read(&self, path: &str, cap: u64) -> Result<Vec<u8>, PathRefusal> {
        let canonical = self.check(path)?;
        read_regular(&canonical, cap).map_err(|cause| {
            tracing::warn!(path, setting = self.setting, %cause, "file refused");
            PathRefusal {
                path: path.to_owned(),
                setting: self.setting,
            }
        })
    }
}

/// Reads a regular file of at most `cap` bytes, without following a final
/// symlink and without reading past the cap.
pub fn read_regular(path: &Path, cap: u64) -> Result<Vec<u8>, String> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    let metadata = file.metadata().map_err(|e| e.to_string())?;
    if !metadata.is_file() {
        return Err("not a regular file".to_owned());
    }
    if metadata.len() > cap {
        return Err(format!("{} bytes; at most {cap} are read", metadata.len()));
    }
    read_capped(&mut file, cap)
}

fn read_capped(file: &mut File, cap: u64) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > cap {
        return Err(format!("grew past {cap} bytes while read"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(dir: &Path) -> AllowedDirs {
        AllowedDirs::new("server.secrets.file_dirs", &[dir.display().to_string()]).unwrap()
    }

    #[test]
    fn files_inside_are_allowed_and_dot_dot_and_symlinks_cannot_leave() {
        let root = tempfile::tempdir().unwrap();
        let inside = root.path().join("allowed");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(inside.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(inside.join("sub/ok.properties"), "k=v\n").unwrap();
        std::fs::write(outside.join("secret"), "k=hidden\n").unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), inside.join("link")).unwrap();
        std::os::unix::fs::symlink(&outside, inside.join("dirlink")).unwrap();
        let dirs = allowed(&inside);

        let ok = inside.join("sub/ok.properties").display().to_string();
        assert_eq!(dirs.read(&ok, 1024).unwrap(), b"k=v\n");
        let dotdot = inside
            .join("sub/../../outside/secret")
            .display()
            .to_string();
        let link = inside.join("link").display().to_string();
        let through_dir_link = inside.join("dirlink/secret").display().to_string();
        let missing = inside.join("missing").display().to_string();
        let refusals: Vec<String> = [&dotdot, &link, &through_dir_link, &missing, "/etc/passwd"]
            .iter()
            .map(|p| dirs.read(p, 1024).unwrap_err().to_string())
            .collect();
        for (path, text) in [&dotdot, &link, &through_dir_link, &missing]
            .iter()
            .zip(&refusals)
        {
            assert_eq!(
                *text,
                format!("\"{path}\" is not a readable file under server.secrets.file_dirs"),
                "missing and forbidden files get the same text"
            );
        }
    }

    #[test]
    fn a_symlink_inside_that_stays_inside_is_followed() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("real"), "k=v\n").unwrap();
        std::os::unix::fs::symlink(root.path().join("real"), root.path().join("alias")).unwrap();
        let dirs = allowed(root.path());
        let alias = root.path().join("alias").display().to_string();
        assert_eq!(dirs.read(&alias, 64).unwrap(), b"k=v\n");
    }

    #[test]
    fn devices_directories_and_oversized_files_are_not_read() {
        let root = tempfile::tempdir().unwrap();
        let big = root.path().join("big");
        let file = File::create(&big).unwrap();
        file.set_len(1 << 40).unwrap(); // sparse: 1 TiB that takes no space
        std::os::unix::fs::symlink("/dev/zero", root.path().join("zero")).unwrap();
        let dirs = allowed(root.path());
        let started = std::time::Instant::now();
        assert!(dirs.read(&big.display().to_string(), 64 << 10).is_err());
        assert!(
            dirs.read(&root.path().join("zero").display().to_string(), 64)
                .is_err()
        );
        assert!(dirs.read(&root.path().display().to_string(), 64).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(read_regular(Path::new("/dev/zero"), 64).is_err());
    }

    #[test]
    fn no_directories_allow_nothing_and_missing_directories_are_a_config_error() {
        let none = AllowedDirs::none("server.guests.dirs");
        assert!(none.check("/").is_err());
        assert!(AllowedDirs::new("x", &["/no/such/dir/anywhere".into()]).is_err());
    }
}
